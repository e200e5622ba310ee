// ops/cpu/conv.cpp — conv2d forward and backward through im2col + GEMM.
//
// Compute-bound: im2col unrolls each receptive field into a column so the
// convolution becomes one GEMM per (sample, group):
//   cols (Cg*kh*kw, Ho*Wo) = im2col(x[n, group])
//   y[n, group] (Og, Ho*Wo) = w[group] (Og, Cg*kh*kw) · cols
// Backward is the same GEMMs transposed, with col2im scattering columns back.
#include <algorithm>
#include <vector>

#include "ops/cpu/dispatch.h"
#include "ops/cpu/kernels.h"

namespace minidl::cpu {

namespace {

TensorArg matrix(const void* data, DType dtype, int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  TensorArg m;
  m.data = const_cast<void*>(data);
  m.dtype = dtype;
  m.ndim = 2;
  m.shape[0] = rows, m.shape[1] = cols;
  m.strides[0] = row_stride, m.strides[1] = col_stride;
  return m;
}

struct Geometry {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo, Cg, Og, K;  // K = Cg*kh*kw, rows of cols
};

Geometry geometry(const TensorArg& x, const TensorArg& w, const TensorArg& y, const Conv2dParams& p) {
  Geometry g{};
  g.N = x.shape[0], g.C = x.shape[1], g.H = x.shape[2], g.W = x.shape[3];
  g.O = w.shape[0], g.kh = w.shape[2], g.kw = w.shape[3];
  g.Ho = y.shape[2], g.Wo = y.shape[3];
  g.Cg = g.C / p.groups, g.Og = g.O / p.groups;
  g.K = g.Cg * g.kh * g.kw;
  return g;
}

// The output columns ow whose input column ow·stride − pad + j·dilation lies inside
// [0, W): a contiguous range [lo, hi). Computing it once per kernel column keeps
// the bounds test out of the inner loop.
inline void valid_columns(const Geometry& g, const Conv2dParams& p, int64_t j, int64_t& lo, int64_t& hi) {
  const int64_t offset = j * p.dilation_w - p.pad_w;  // input column of ow = 0
  lo = offset >= 0 ? 0 : (-offset + p.stride_w - 1) / p.stride_w;
  hi = g.W - offset <= 0 ? 0 : (g.W - offset + p.stride_w - 1) / p.stride_w;
  hi = std::min(hi, g.Wo);
  lo = std::min(lo, hi);
}

// cols (K, Ho*Wo) := the receptive fields of x_img (Cg, H, W); zero where padded.
// Memory-bound: each row of cols is a strided (stride 1: contiguous) slice of one
// input row, so it is a copy with zeros at the edges.
template <class T>
void im2col(T* cols, const T* x_img, const Geometry& g, const Conv2dParams& p) {
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        T* row = cols + ((c * g.kh + i) * g.kw + j) * g.Ho * g.Wo;
        int64_t lo, hi;
        valid_columns(g, p, j, lo, hi);
        const int64_t w_first = lo * p.stride_w - p.pad_w + j * p.dilation_w;
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          T* out = row + oh * g.Wo;
          const int64_t h = oh * p.stride_h - p.pad_h + i * p.dilation_h;
          if (h < 0 || h >= g.H) {
            std::fill(out, out + g.Wo, T(0));
            continue;
          }
          const T* in = x_img + (c * g.H + h) * g.W + w_first;
          std::fill(out, out + lo, T(0));
          if (p.stride_w == 1) {
            std::copy(in, in + (hi - lo), out + lo);
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) out[ow] = in[(ow - lo) * p.stride_w];
          }
          std::fill(out + hi, out + g.Wo, T(0));
        }
      }
}

// x_img (Cg, H, W) += the columns scattered back (the adjoint of im2col).
template <class T>
void col2im(T* x_img, const T* cols, const Geometry& g, const Conv2dParams& p) {
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* row = cols + ((c * g.kh + i) * g.kw + j) * g.Ho * g.Wo;
        int64_t lo, hi;
        valid_columns(g, p, j, lo, hi);
        const int64_t w_first = lo * p.stride_w - p.pad_w + j * p.dilation_w;
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          const int64_t h = oh * p.stride_h - p.pad_h + i * p.dilation_h;
          if (h < 0 || h >= g.H) continue;
          T* out = x_img + (c * g.H + h) * g.W + w_first;
          const T* in = row + oh * g.Wo;
          for (int64_t ow = lo; ow < hi; ++ow) out[(ow - lo) * p.stride_w] += in[ow];
        }
      }
}

}  // namespace

void conv2d_forward(const TensorArg& y, const TensorArg& x, const TensorArg& w, const TensorArg& bias,
                    const Conv2dParams& p) {
  const Geometry g = geometry(x, w, y, p);
  const int64_t P = g.Ho * g.Wo;
  dispatch_f32_f64(x.dtype, "conv2d", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.ptr<T>();
    const T* wp = w.ptr<T>();
    const T* bp = bias.data ? bias.ptr<T>() : nullptr;
    T* yp = y.ptr<T>();
#pragma omp parallel if (g.N > 1)
    {
      std::vector<T> cols(static_cast<size_t>(g.K * P));
#pragma omp for
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t grp = 0; grp < p.groups; ++grp) {
          im2col(cols.data(), xp + (n * g.C + grp * g.Cg) * g.H * g.W, g, p);
          T* y_grp = yp + (n * g.O + grp * g.Og) * P;
          gemm(g.Og, P, g.K, 1.0, matrix(wp + grp * g.Og * g.K, x.dtype, g.Og, g.K, g.K, 1),
               matrix(cols.data(), x.dtype, g.K, P, P, 1), 0.0, matrix(y_grp, x.dtype, g.Og, P, P, 1));
          if (bp)
            for (int64_t o = 0; o < g.Og; ++o)
              for (int64_t q = 0; q < P; ++q) y_grp[o * P + q] += bp[grp * g.Og + o];
        }
    }
  });
}

void conv2d_backward_input(const TensorArg& gx, const TensorArg& gy, const TensorArg& w, const Conv2dParams& p) {
  const Geometry g = geometry(gx, w, gy, p);
  const int64_t P = g.Ho * g.Wo;
  dispatch_f32_f64(gx.dtype, "conv2d backward", [&](auto tag) {
    using T = decltype(tag);
    const T* gyp = gy.ptr<T>();
    const T* wp = w.ptr<T>();
    T* gxp = gx.ptr<T>();
#pragma omp parallel if (g.N > 1)
    {
      std::vector<T> cols(static_cast<size_t>(g.K * P));
#pragma omp for
      for (int64_t n = 0; n < g.N; ++n) {
        std::fill(gxp + n * g.C * g.H * g.W, gxp + (n + 1) * g.C * g.H * g.W, T(0));
        for (int64_t grp = 0; grp < p.groups; ++grp) {
          // dcols (K, P) = w[group]ᵀ (K, Og) · gy[n, group] (Og, P)
          gemm(g.K, P, g.Og, 1.0, matrix(wp + grp * g.Og * g.K, gx.dtype, g.K, g.Og, 1, g.K),
               matrix(gyp + (n * g.O + grp * g.Og) * P, gx.dtype, g.Og, P, P, 1), 0.0,
               matrix(cols.data(), gx.dtype, g.K, P, P, 1));
          col2im(gxp + (n * g.C + grp * g.Cg) * g.H * g.W, cols.data(), g, p);
        }
      }
    }
  });
}

void conv2d_backward_weight(const TensorArg& gw, const TensorArg& gy, const TensorArg& x, const Conv2dParams& p) {
  const Geometry g = geometry(x, gw, gy, p);
  const int64_t P = g.Ho * g.Wo;
  dispatch_f32_f64(gw.dtype, "conv2d backward", [&](auto tag) {
    using T = decltype(tag);
    const T* gyp = gy.ptr<T>();
    const T* xp = x.ptr<T>();
    T* gwp = gw.ptr<T>();
    std::vector<T> cols(static_cast<size_t>(g.K * P));
    // Samples one after another (they all add into gw); the GEMM is parallel inside.
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t grp = 0; grp < p.groups; ++grp) {
        im2col(cols.data(), xp + (n * g.C + grp * g.Cg) * g.H * g.W, g, p);
        // gw[group] (Og, K) += gy[n, group] (Og, P) · colsᵀ (P, K)
        gemm(g.Og, g.K, P, 1.0, matrix(gyp + (n * g.O + grp * g.Og) * P, gw.dtype, g.Og, P, P, 1),
             matrix(cols.data(), gw.dtype, P, g.K, 1, P), n == 0 ? 0.0 : 1.0,
             matrix(gwp + grp * g.Og * g.K, gw.dtype, g.Og, g.K, g.K, 1));
      }
  });
}

}  // namespace minidl::cpu
