// ops/cpu/pool.cpp — max, average and adaptive-average 2-D pooling.
//
// Bandwidth-bound; parallel over the N*C planes, each plane independent. Max
// pooling goes plane by plane through a MaxPoolPlane (pool_plane.h), which the
// compiled plan's pooled convolution (conv.cpp) runs too.
#include <immintrin.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/check.h"
#include "core/dtype_dispatch.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"
#include "ops/cpu/pool_plane.h"

namespace minidl::cpu {

namespace {
struct Planes {
  int64_t planes, H, W, Ho, Wo;
};
Planes planes_of(const TensorArg& x, const TensorArg& y) {
  return {x.shape[0] * x.shape[1], x.shape[2], x.shape[3], y.shape[2], y.shape[3]};
}

// The update for one window element: it wins if it is larger than the best so far,
// or NaN while the best is not (so NaN propagates, as in PyTorch). Written as a
// select, not a branch: which element wins is data a branch predictor cannot learn.
template <class T>
inline bool takes_over(T v, T best) {
  return ((v > best) | (v != v)) & (best == best);
}

// Max pooling without padding, where every window lies inside the input. The
// loops run over all Ho·Wo outputs of a plane at once, one window element at a
// time: out[o] vs in[first[o] + offset]. Rows of a pooled plane are short (14, 7),
// too short to vectorise along; a whole plane (196, 49) is long enough, with
// gather loads for the strided reads. __restrict: the arrays never overlap.
// best_i (the winner's offset in the plane, for the backward) is only written
// when kIndex: inference does not need it.
template <bool kIndex, class T>
void max_pool_plane(T* __restrict best, int32_t* __restrict best_i, const T* __restrict in,
                    const int32_t* __restrict first, int64_t outputs, const Pool2dParams& p, int64_t W) {
  for (int64_t o = 0; o < outputs; ++o) {
    best[o] = in[first[o]];
    if constexpr (kIndex) best_i[o] = first[o];
  }
  for (int64_t i = 0; i < p.kernel_h; ++i)
    for (int64_t j = 0; j < p.kernel_w; ++j) {
      if (i == 0 && j == 0) continue;
      const int32_t offset = static_cast<int32_t>(i * W + j);
      for (int64_t o = 0; o < outputs; ++o) {
        const int32_t at = first[o] + offset;
        const T v = in[at];
        const bool take = takes_over(v, best[o]);
        best[o] = take ? v : best[o];
        if constexpr (kIndex) best_i[o] = take ? at : best_i[o];
      }
    }
}

// The usual 2×2 window at stride 2, f32, on an even-width plane, with AVX-512 and
// no gathers: two passes of whole-vector loads. The pairs (h, 2w), (h, 2w + 1) of
// an even-width plane are the consecutive pairs of the flat plane, so pass 1
// splits 32 consecutive floats into their 16 even and 16 odd elements (one
// two-register permute each) and keeps the winner of each pair; pass 2 takes the
// winner of rows 2·oh and 2·oh + 1 of that, a (masked) vector per row. Winners
// resolve as the sequential scan does: the first of equals, the first NaN.
// (Plain C++ for this left GCC with a scalar, branchy row pass: 4× slower.)
// pair_best / pair_at: scratch of 2·Ho·Wo elements.

// take = the lanes where v takes over from best (takes_over, 16 lanes at a time).
__attribute__((target("avx512f"))) inline __mmask16 takes_over16(__m512 v, __m512 best) {
  const __mmask16 larger = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
  const __mmask16 v_nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  const __mmask16 best_ok = _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q);
  return static_cast<__mmask16>((larger | v_nan) & best_ok);
}

// The mask of lanes [0, n), n clamped to [0, 16].
inline __mmask16 first_lanes(int64_t n) {
  return static_cast<__mmask16>(n >= 16 ? 0xffff : n <= 0 ? 0 : (1u << n) - 1);
}

template <bool kIndex>
__attribute__((target("avx512f"))) void max_pool_plane_2x2_avx512(float* best, int32_t* best_i, const float* in,
                                                                  float* pair_best, int32_t* pair_at,
                                                                  const Planes& s) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const int64_t pairs = 2 * s.Ho * s.Wo;  // rows past 2·Ho (odd H) are not read
  for (int64_t i = 0; i < pairs; i += 16) {
    const __mmask16 m = first_lanes(pairs - i);
    const __m512 lo = _mm512_maskz_loadu_ps(first_lanes(2 * (pairs - i)), in + 2 * i);
    const __m512 hi = _mm512_maskz_loadu_ps(first_lanes(2 * (pairs - i) - 16), in + 2 * i + 16);
    const __m512 a = _mm512_permutex2var_ps(lo, even, hi), b = _mm512_permutex2var_ps(lo, odd, hi);
    const __mmask16 take = takes_over16(b, a);
    _mm512_mask_storeu_ps(pair_best + i, m, _mm512_mask_blend_ps(take, a, b));
    if constexpr (kIndex) {
      // pair i + lane starts at offset 2·i + 2·lane; the odd element wins with + 1
      const __m512i at = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(2 * i)), even);
      _mm512_mask_storeu_epi32(pair_at + i, m, _mm512_mask_add_epi32(at, take, at, _mm512_set1_epi32(1)));
    }
  }
  for (int64_t oh = 0; oh < s.Ho; ++oh)
    for (int64_t ow = 0; ow < s.Wo; ow += 16) {
      const __mmask16 m = first_lanes(s.Wo - ow);
      const int64_t top = 2 * oh * s.Wo + ow, bottom = top + s.Wo, o = oh * s.Wo + ow;
      const __m512 t = _mm512_maskz_loadu_ps(m, pair_best + top), b = _mm512_maskz_loadu_ps(m, pair_best + bottom);
      const __mmask16 take = takes_over16(b, t);
      _mm512_mask_storeu_ps(best + o, m, _mm512_mask_blend_ps(take, t, b));
      if constexpr (kIndex) {
        const __m512i ti = _mm512_maskz_loadu_epi32(m, pair_at + top), bi = _mm512_maskz_loadu_epi32(m, pair_at + bottom);
        _mm512_mask_storeu_epi32(best_i + o, m, _mm512_mask_blend_epi32(take, ti, bi));
      }
    }
}

// The general case (padding): window by window, clipped to the input.
template <bool kIndex, class T>
void max_pool_plane_clipped(T* best, int32_t* best_i, const T* in, const Planes& s, const Pool2dParams& p) {
  for (int64_t oh = 0; oh < s.Ho; ++oh)
    for (int64_t ow = 0; ow < s.Wo; ++ow) {
      const int64_t h0 = std::max<int64_t>(oh * p.stride_h - p.pad_h, 0);
      const int64_t h1 = std::min(oh * p.stride_h - p.pad_h + p.kernel_h, s.H);
      const int64_t w0 = std::max<int64_t>(ow * p.stride_w - p.pad_w, 0);
      const int64_t w1 = std::min(ow * p.stride_w - p.pad_w + p.kernel_w, s.W);
      // Padding is at most half the kernel, so every window holds an input element.
      int64_t arg = h0 * s.W + w0;
      T b = in[arg];
      for (int64_t h = h0; h < h1; ++h)
        for (int64_t w = w0; w < w1; ++w) {
          const T v = in[h * s.W + w];
          const bool take = takes_over(v, b);
          b = take ? v : b;
          arg = take ? h * s.W + w : arg;
        }
      best[oh * s.Wo + ow] = b;
      if constexpr (kIndex) best_i[oh * s.Wo + ow] = static_cast<int32_t>(arg);
    }
}
}  // namespace

MaxPoolPlane::MaxPoolPlane(int64_t H, int64_t W, int64_t Ho, int64_t Wo, const Pool2dParams& p, DType dtype)
    : H_(H), W_(W), Ho_(Ho), Wo_(Wo), p_(p), inside_(p.pad_h == 0 && p.pad_w == 0) {
  two_by_two_ = cpu_path() == CpuPath::avx512 && dtype == DType::f32 && inside_ && p.kernel_h == 2 && p.kernel_w == 2 &&
                p.stride_h == 2 && p.stride_w == 2 && W % 2 == 0;
  if (two_by_two_) {
    pair_best_.resize(static_cast<size_t>(2 * Ho * Wo));
    pair_at_.resize(pair_best_.size());
  } else if (inside_) {
    first_.resize(static_cast<size_t>(Ho * Wo));
    for (int64_t oh = 0; oh < Ho; ++oh)
      for (int64_t ow = 0; ow < Wo; ++ow)
        first_[oh * Wo + ow] = static_cast<int32_t>(oh * p.stride_h * W + ow * p.stride_w);
  }
}

template <class T>
void MaxPoolPlane::run(T* out, int32_t* arg, const T* in) {
  const Planes s{1, H_, W_, Ho_, Wo_};
  if constexpr (std::is_same_v<T, float>) {
    if (two_by_two_) {
      if (arg)
        max_pool_plane_2x2_avx512<true>(out, arg, in, pair_best_.data(), pair_at_.data(), s);
      else
        max_pool_plane_2x2_avx512<false>(out, arg, in, pair_best_.data(), pair_at_.data(), s);
      return;
    }
  }
  if (inside_ && arg)
    max_pool_plane<true>(out, arg, in, first_.data(), Ho_ * Wo_, p_, W_);
  else if (inside_)
    max_pool_plane<false>(out, arg, in, first_.data(), Ho_ * Wo_, p_, W_);
  else if (arg)
    max_pool_plane_clipped<true>(out, arg, in, s, p_);
  else
    max_pool_plane_clipped<false>(out, arg, in, s, p_);
}
template void MaxPoolPlane::run<float>(float*, int32_t*, const float*);
template void MaxPoolPlane::run<double>(double*, int32_t*, const double*);

void check_pooled_output(const char* op, const Pool2dParams& q, int64_t Ho, int64_t Wo, int64_t Hy, int64_t Wy) {
  MINIDL_CHECK(q.kernel_h >= 1 && q.kernel_w >= 1 && q.stride_h >= 1 && q.stride_w >= 1 && q.pad_h >= 0 &&
                   q.pad_w >= 0 && 2 * q.pad_h <= q.kernel_h && 2 * q.pad_w <= q.kernel_w,
               "{}: pool window {}x{}, stride {}x{}, padding {}x{}: expected positive sizes and at most half the "
               "window of padding",
               op, q.kernel_h, q.kernel_w, q.stride_h, q.stride_w, q.pad_h, q.pad_w);
  MINIDL_CHECK(
      Hy == (Ho + 2 * q.pad_h - q.kernel_h) / q.stride_h + 1 && Wy == (Wo + 2 * q.pad_w - q.kernel_w) / q.stride_w + 1,
      "{}: output {}x{} is not the {}x{} convolution pooled by a {}x{} window at stride {}x{}", op, Hy, Wy, Ho, Wo,
      q.kernel_h, q.kernel_w, q.stride_h, q.stride_w);
}

ConvOutputSize checked_conv_output(const char* op, int64_t H, int64_t W, int64_t kh, int64_t kw, const Conv2dParams& p,
                                   const Pool2dParams* max_pool, int64_t Hy, int64_t Wy) {
  const int64_t Ho = (H + 2 * p.pad_h - p.dilation_h * (kh - 1) - 1) / p.stride_h + 1;
  const int64_t Wo = (W + 2 * p.pad_w - p.dilation_w * (kw - 1) - 1) / p.stride_w + 1;
  MINIDL_CHECK(Ho >= 1 && Wo >= 1, "{}: input {}x{} gives a {}x{} output with a {}x{} kernel", op, H, W, Ho, Wo, kh,
               kw);
  if (max_pool)
    check_pooled_output(op, *max_pool, Ho, Wo, Hy, Wy);
  else
    MINIDL_CHECK(Hy == Ho && Wy == Wo, "{}: output {}x{} is not the convolution's {}x{}", op, Hy, Wy, Ho, Wo);
  return {Ho, Wo};
}

void max_pool2d_forward(const TensorArg& y, int32_t* argmax, const TensorArg& x, const Pool2dParams& p) {
  const Planes s = planes_of(x, y);
  dispatch_f32_f64(x.dtype, "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.ptr<T>();
    T* yp = y.ptr<T>();
    maybe_parallel(s.planes * s.H * s.W > kParallelGrain && !in_parallel(), [&] {
      MaxPoolPlane pool(s.H, s.W, s.Ho, s.Wo, p, x.dtype);
#pragma omp for schedule(static)
      for (int64_t pl = 0; pl < s.planes; ++pl)
        pool.run(yp + pl * s.Ho * s.Wo, argmax ? argmax + pl * s.Ho * s.Wo : nullptr, xp + pl * s.H * s.W);
    });
  });
}

void max_pool2d_backward(const TensorArg& gx, const TensorArg& gy, const int32_t* argmax) {
  const Planes s = planes_of(gx, gy);
  dispatch_f32_f64(gx.dtype, "max_pool2d backward", [&](auto tag) {
    using T = decltype(tag);
    const T* gyp = gy.ptr<T>();
    const int32_t* ap = argmax;
    T* gxp = gx.ptr<T>();
    parallel_for(s.planes * s.H * s.W > kParallelGrain, s.planes, [&](int64_t pl0, int64_t pl1) {
      for (int64_t pl = pl0; pl < pl1; ++pl) {
        T* out = gxp + pl * s.H * s.W;
        std::fill(out, out + s.H * s.W, T(0));
        for (int64_t q = pl * s.Ho * s.Wo; q < (pl + 1) * s.Ho * s.Wo; ++q) out[ap[q]] += gyp[q];
      }
    });
  });
}

// Both average poolings are "mean over a window per output cell"; they differ only
// in where the windows are. A window source calls f(out_index, h0, h1, w0, w1, divisor)
// for every output cell, with the window [h0, h1) × [w0, w1).

// avg_pool2d: kernel-sized windows at stride steps, clipped to the input.
static auto fixed_windows(const Planes& s, const Pool2dParams& p) {
  return [&s, &p](auto&& f) {
    for (int64_t oh = 0; oh < s.Ho; ++oh)
      for (int64_t ow = 0; ow < s.Wo; ++ow) {
        int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
        int64_t h1 = std::min(h0 + p.kernel_h, s.H + p.pad_h), w1 = std::min(w0 + p.kernel_w, s.W + p.pad_w);
        int64_t padded_area = (h1 - h0) * (w1 - w0);
        h0 = std::max<int64_t>(h0, 0), w0 = std::max<int64_t>(w0, 0);
        h1 = std::min(h1, s.H), w1 = std::min(w1, s.W);
        f(oh * s.Wo + ow, h0, h1, w0, w1, p.count_include_pad ? padded_area : (h1 - h0) * (w1 - w0));
      }
  };
}

// adaptive_avg_pool2d: windows [floor(i*H/Ho), ceil((i+1)*H/Ho)).
static auto adaptive_windows(const Planes& s) {
  return [&s](auto&& f) {
    for (int64_t oh = 0; oh < s.Ho; ++oh) {
      int64_t h0 = oh * s.H / s.Ho, h1 = ((oh + 1) * s.H + s.Ho - 1) / s.Ho;
      for (int64_t ow = 0; ow < s.Wo; ++ow) {
        int64_t w0 = ow * s.W / s.Wo, w1 = ((ow + 1) * s.W + s.Wo - 1) / s.Wo;
        f(oh * s.Wo + ow, h0, h1, w0, w1, (h1 - h0) * (w1 - w0));
      }
    }
  };
}

template <class Windows>
static void window_mean_forward(const char* op, const TensorArg& y, const TensorArg& x, const Planes& s,
                                Windows&& windows) {
  dispatch_f32_f64(x.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.ptr<T>();
    T* yp = y.ptr<T>();
    parallel_for(s.planes * s.H * s.W > kParallelGrain, s.planes, [&](int64_t pl0, int64_t pl1) {
      for (int64_t pl = pl0; pl < pl1; ++pl) {
        const T* in = xp + pl * s.H * s.W;
        T* out = yp + pl * s.Ho * s.Wo;
        windows([&](int64_t o, int64_t h0, int64_t h1, int64_t w0, int64_t w1, int64_t divisor) {
          T acc = 0;
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) acc += in[h * s.W + w];
          out[o] = acc / T(divisor);
        });
      }
    });
  });
}

// Each output's gradient is shared equally by the cells of its window.
template <class Windows>
static void window_mean_backward(const char* op, const TensorArg& gx, const TensorArg& gy, const Planes& s,
                                 Windows&& windows) {
  dispatch_f32_f64(gx.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    const T* gyp = gy.ptr<T>();
    T* gxp = gx.ptr<T>();
    parallel_for(s.planes * s.H * s.W > kParallelGrain, s.planes, [&](int64_t pl0, int64_t pl1) {
      for (int64_t pl = pl0; pl < pl1; ++pl) {
        T* out = gxp + pl * s.H * s.W;
        const T* g = gyp + pl * s.Ho * s.Wo;
        std::fill(out, out + s.H * s.W, T(0));
        windows([&](int64_t o, int64_t h0, int64_t h1, int64_t w0, int64_t w1, int64_t divisor) {
          for (int64_t h = h0; h < h1; ++h)
            for (int64_t w = w0; w < w1; ++w) out[h * s.W + w] += g[o] / T(divisor);
        });
      }
    });
  });
}

void avg_pool2d_forward(const TensorArg& y, const TensorArg& x, const Pool2dParams& p) {
  const Planes s = planes_of(x, y);
  window_mean_forward("avg_pool2d", y, x, s, fixed_windows(s, p));
}
void avg_pool2d_backward(const TensorArg& gx, const TensorArg& gy, const Pool2dParams& p) {
  const Planes s = planes_of(gx, gy);
  window_mean_backward("avg_pool2d backward", gx, gy, s, fixed_windows(s, p));
}
void adaptive_avg_pool2d_forward(const TensorArg& y, const TensorArg& x) {
  const Planes s = planes_of(x, y);
  window_mean_forward("adaptive_avg_pool2d", y, x, s, adaptive_windows(s));
}
void adaptive_avg_pool2d_backward(const TensorArg& gx, const TensorArg& gy) {
  const Planes s = planes_of(gx, gy);
  window_mean_backward("adaptive_avg_pool2d backward", gx, gy, s, adaptive_windows(s));
}

}  // namespace minidl::cpu
