// ops/cpu/conv.cpp — conv2d forward and backward through im2col + GEMM.
//
// Compute-bound: im2col unrolls each receptive field into a column so the
// convolution becomes a GEMM per group:
//   cols (Cg*kh*kw, B*Ho*Wo) = im2col(x[n .. n+B, group])
//   y[n .. n+B, group] (Og, B*Ho*Wo) = w[group] (Og, Cg*kh*kw) · cols
// Backward is the same GEMMs transposed, with col2im scattering columns back; one
// pass computes whichever of the input, weight and bias gradients are wanted.
//
// B samples share one GEMM. One sample's GEMM is small (conv2 of the zoo's cnn:
// 64 × 196 × 288), and small GEMMs spend their time packing and synchronising;
// putting B samples side by side makes the GEMM B times wider. B is chosen so
// that a batch's two workspaces — cols and the GEMM's output — stay around
// kWorkspaceBytes (each is written once and read once right after, so it should
// stay in cache) and so every thread gets a batch (conv_batching.h). Batches run in
// parallel, one thread each, with single-threaded GEMMs; when there are fewer
// batches than threads (inference at batch 1) they run one after another and the
// GEMM is parallel inside.
//
// The GEMM's output for a batch is laid out (Og, B*P) while y is (N, O, P), so it
// is copied into place, and the bias is added in that same pass. A 1×1 kernel
// with stride 1 and no padding needs no im2col (cols is x itself) nor a copy:
// each sample is one GEMM straight from x into y.
//
// A bf16 weight (a bf16 conv2d, eager or in a compiled plan, where the bf16 GEMM
// outruns the f32 one: gemm_bf16_outruns_f32) makes the GEMM a bf16 one: the
// weight (Og, K) as its rows, the f32 columns rounded to bf16 as they are packed
// into its layout (gemm_bf16_pack_columns), f32 sums into the same workspace;
// the rest is unchanged.
//
// For inference the compiled plan may ask for a max pool after the activation
// (`max_pool`): each plane of the GEMM's output is then finished in place in the
// workspace and pooled from there into y, so the full-size output (the zoo cnn's
// conv1 at batch 128: 12.8 MB, four times its pooled size) is never written to
// memory, and the pooling never reads it back.
#include <algorithm>
#include <optional>
#include <vector>

#include "core/check.h"
#include "core/dtype_dispatch.h"
#include "core/storage.h"
#include "ops/cpu/conv_batching.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"
#include "ops/cpu/pool_plane.h"

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
// cols' rows are ld apart (ld ≥ Ho*Wo: several samples' columns side by side).
// Memory-bound: each row of cols is a strided (stride 1: contiguous) slice of one
// input row, so it is a copy with zeros at the edges.
template <class T>
void im2col_rows(T* cols, int64_t ld, const T* x_img, const Geometry& g, const Conv2dParams& p) {
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        T* row = cols + ((c * g.kh + i) * g.kw + j) * ld;
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

// The same when the stride is 1 and the output is as wide as the input ("same"
// padding, the usual 3×3 conv): a row of cols is then the input plane shifted by
// (dh, dw), so it is one contiguous copy instead of Ho short ones (14 floats for
// the zoo cnn's second conv, where the calls cost more than the copying). The
// elements the shift wrapped around from the neighbouring image row are zeroed after.
template <class T>
void im2col_shifted(T* cols, int64_t ld, const T* x_img, const Geometry& g, const Conv2dParams& p) {
  const int64_t plane = g.Ho * g.Wo;
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        T* row = cols + ((c * g.kh + i) * g.kw + j) * ld;
        const int64_t dh = i * p.dilation_h - p.pad_h, dw = j * p.dilation_w - p.pad_w;
        // output rows [oh0, oh1) and columns [lo, hi) read inside the image
        const int64_t oh0 = std::clamp<int64_t>(-dh, 0, g.Ho), oh1 = std::clamp<int64_t>(g.H - dh, oh0, g.Ho);
        int64_t lo, hi;
        valid_columns(g, p, j, lo, hi);
        if (oh0 == oh1 || lo == hi) {
          std::fill(row, row + plane, T(0));
          continue;
        }
        const int64_t first = oh0 * g.Wo + lo, last = (oh1 - 1) * g.Wo + hi;  // row[first, last) is copied
        const T* in = x_img + (c * g.H + oh0 + dh) * g.W + lo + dw;
        std::fill(row, row + first, T(0));
        std::copy(in, in + (last - first), row + first);
        std::fill(row + last, row + plane, T(0));
        for (int64_t oh = oh0; oh + 1 < oh1; ++oh)  // wrapped: columns hi.. of row oh and ..lo of row oh + 1
          std::fill(row + oh * g.Wo + hi, row + (oh + 1) * g.Wo + lo, T(0));
      }
}

template <class T>
void im2col(T* cols, int64_t ld, const T* x_img, const Geometry& g, const Conv2dParams& p) {
  if (p.stride_h == 1 && p.stride_w == 1 && g.Wo == g.W)
    im2col_shifted(cols, ld, x_img, g, p);
  else
    im2col_rows(cols, ld, x_img, g, p);
}

// x_img (Cg, H, W) += the columns scattered back (the adjoint of im2col).
template <class T>
void col2im(T* x_img, const T* cols, int64_t ld, const Geometry& g, const Conv2dParams& p) {
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* row = cols + ((c * g.kh + i) * g.kw + j) * ld;
        int64_t lo, hi;
        valid_columns(g, p, j, lo, hi);
        const int64_t w_first = lo * p.stride_w - p.pad_w + j * p.dilation_w;
        for (int64_t oh = 0; oh < g.Ho; ++oh) {
          const int64_t h = oh * p.stride_h - p.pad_h + i * p.dilation_h;
          if (h < 0 || h >= g.H) continue;
          T* __restrict out = x_img + (c * g.H + h) * g.W + w_first;
          const T* __restrict in = row + oh * g.Wo + lo;
          if (p.stride_w == 1)  // unit strides on both sides: a loop the vectoriser takes
            for (int64_t k = 0; k < hi - lo; ++k) out[k] += in[k];
          else
            for (int64_t k = 0; k < hi - lo; ++k) out[k * p.stride_w] += in[k];
        }
      }
}

// The workspace bytes per sample: cols (K, P) and the GEMM's output (Og, P) in
// elem_bytes each, and extra_bytes more per output position (the bf16 GEMM's
// packed columns).
Batching batching(const Geometry& g, int64_t elem_bytes, int64_t extra_bytes = 0) {
  return cpu::batching(g.N, ((g.K + g.Og) * elem_bytes + extra_bytes) * g.Ho * g.Wo);
}

// The 1×1 fast path applies: cols would be x itself.
bool pointwise(const Geometry& g, const Conv2dParams& p) {
  return g.kh == 1 && g.kw == 1 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 0 && p.pad_w == 0;
}

}  // namespace

void conv2d_forward(const TensorArg& y, const TensorArg& x, const TensorArg& w, const TensorArg& bias,
                    const Conv2dParams& p, const Pool2dParams* max_pool) {
  Geometry g = geometry(x, w, y, p);
  if (max_pool) {  // y is the pooled output: the convolution's own size comes from the input
    g.Ho = (g.H + 2 * p.pad_h - p.dilation_h * (g.kh - 1) - 1) / p.stride_h + 1;
    g.Wo = (g.W + 2 * p.pad_w - p.dilation_w * (g.kw - 1) - 1) / p.stride_w + 1;
    check_pooled_output("conv2d_forward", *max_pool, g.Ho, g.Wo, y.shape[2], y.shape[3]);
  }
  const int64_t P = g.Ho * g.Wo;
  const int64_t pooled = y.shape[2] * y.shape[3];  // P when there is no pool
  const bool bf16_weight = w.dtype == DType::bf16;
  MINIDL_CHECK(!bf16_weight || x.dtype == DType::f32, "conv2d_forward: a bf16 weight takes an f32 input, got {}",
               x.dtype);
  dispatch_f32_f64(x.dtype, "conv2d", [&](auto tag) {
    using T = decltype(tag);
    const DType dt = x.dtype;
    const T* xp = x.ptr<T>();
    const T* wp = bf16_weight ? nullptr : w.ptr<T>();
    const T* bp = bias.data ? bias.ptr<T>() : nullptr;
    T* yp = y.ptr<T>();
    if (pointwise(g, p) && !max_pool && !bf16_weight) {
      maybe_parallel(g.N > 1 && !in_parallel(), [&] {
#pragma omp for schedule(static)
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t grp = 0; grp < p.groups; ++grp) {
          // The bias (one per output channel: per row of y[n, group]) and the ReLU
          // are the GEMM's epilogue.
          gemm(g.Og, P, g.K, 1.0, matrix(wp + grp * g.Og * g.K, dt, g.Og, g.K, g.K, 1),
               matrix(xp + (n * g.C + grp * g.Cg) * P, dt, g.K, P, P, 1), 0.0,
               matrix(yp + (n * g.O + grp * g.Og) * P, dt, g.Og, P, P, 1), GemmKernel::best,
               {.bias = bp ? bp + grp * g.Og : nullptr, .bias_per_row = true, .relu = p.relu});
        }
      });
      return;
    }
    // A bf16 weight adds the packed columns (2 bytes per element of cols) to the workspaces.
    const Batching bt = batching(g, int64_t{sizeof(T)}, bf16_weight ? 2 * g.K : 0);
    maybe_parallel(bt.parallel, [&] {
      Workspace<T> cols(g.K * bt.B * P), out(g.Og * bt.B * P);
      Workspace<uint16_t> packed(bf16_weight ? gemm_bf16_packed_elements(bt.B * P, g.K) : 0);
      std::optional<MaxPoolPlane> pool;
      if (max_pool) pool.emplace(g.Ho, g.Wo, y.shape[2], y.shape[3], *max_pool, dt);
#pragma omp for schedule(static)
      for (int64_t batch = 0; batch < bt.batches; ++batch) {
        const auto [n0, nb] = bt.range(batch);
        const int64_t ld = nb * P;
        for (int64_t grp = 0; grp < p.groups; ++grp) {
          for (int64_t b = 0; b < nb; ++b)
            im2col(cols.data() + b * P, ld, xp + ((n0 + b) * g.C + grp * g.Cg) * g.H * g.W, g, p);
          if constexpr (std::is_same_v<T, float>) {
            if (bf16_weight) {
              // The bf16 GEMM takes its second operand packed in bf16 pairs: cols
              // rounded on the way (half the bytes of cols, where the f32 GEMM
              // would pack cols into its own layout anyway).
              gemm_bf16_pack_columns(cols.data(), ld, g.K, ld, packed.data());
              Bf16GemmArgs a;
              a.M = g.Og, a.N = ld, a.K = g.K;
              a.x = static_cast<const uint16_t*>(w.data) + grp * g.Og * g.K, a.ldx = g.K;
              a.w_packed = packed.data();
              a.y = out.data(), a.ldy = ld;
              gemm_bf16(a);
            }
          }
          if (!bf16_weight)
            gemm(g.Og, ld, g.K, 1.0, matrix(wp + grp * g.Og * g.K, dt, g.Og, g.K, g.K, 1),
                 matrix(cols.data(), dt, g.K, ld, ld, 1), 0.0, matrix(out.data(), dt, g.Og, ld, ld, 1));
          // out (Og, nb·P) -> y[n0 + b, group] (Og, P), adding the bias and
          // applying the ReLU on the way. With a pool, each plane is finished in
          // place, still in cache, and only its pooled (Og, Hp·Wp) goes to y:
          // the same values, in the same order, as the three ops one after another.
          for (int64_t b = 0; b < nb; ++b)
            for (int64_t o = 0; o < g.Og; ++o) {
              T* src = out.data() + o * ld + b * P;
              const int64_t plane = (n0 + b) * g.O + grp * g.Og + o;
              T* dst = pool ? src : yp + plane * P;
              const T bias_o = bp ? bp[grp * g.Og + o] : T(0);
              if (p.relu)
                for (int64_t q = 0; q < P; ++q) {
                  const T v = src[q] + bias_o;
                  dst[q] = v > T(0) ? v : T(0);  // as relu(): NaN becomes 0
                }
              else
                for (int64_t q = 0; q < P; ++q) dst[q] = src[q] + bias_o;
              if (pool) pool->run(yp + plane * pooled, nullptr, src);
            }
        }
      }
    });
  });
}

// Sparse weight: the same im2col, one sample at a time, and spmm writes y[n]
// (O, P) directly — bias and ReLU in its epilogue. Samples run in parallel, each
// thread with its own cols; at batch 1 spmm is parallel inside instead.
void sparse_conv2d_forward(const TensorArg& y, const TensorArg& x, const SparseMatrixArg& w, const TensorArg& bias,
                           int64_t kernel_h, int64_t kernel_w, const Conv2dParams& p) {
  Geometry g{};
  g.N = x.shape[0], g.C = x.shape[1], g.H = x.shape[2], g.W = x.shape[3];
  g.O = w.rows, g.kh = kernel_h, g.kw = kernel_w;
  g.Ho = y.shape[2], g.Wo = y.shape[3];
  g.Cg = g.C, g.Og = g.O, g.K = g.C * g.kh * g.kw;
  const int64_t P = g.Ho * g.Wo;
  const float* xp = x.ptr<float>();
  float* yp = y.ptr<float>();
  const GemmEpilogue epilogue{.bias = bias.data, .bias_per_row = true, .relu = p.relu};
  maybe_parallel(g.N > 1 && !in_parallel(), [&] {
    Workspace<float> cols(pointwise(g, p) ? 0 : g.K * P);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < g.N; ++n) {
      const float* x_img = xp + n * g.C * g.H * g.W;
      if (!pointwise(g, p)) im2col(cols.data(), P, x_img, g, p);
      const float* b = pointwise(g, p) ? x_img : cols.data();
      spmm(w, matrix(b, DType::f32, g.K, P, P, 1), matrix(yp + n * g.O * P, DType::f32, g.O, P, P, 1), epilogue);
    }
  });
}

// Both gradients in one pass over the batches, since they read the same gy: per
// batch, gy is gathered once into the GEMM's (Og, nb·P) layout — masked by the
// fused ReLU's output on the way, and summed into the bias gradient — and then
//   gx: dcols (K, nb·P) = w[group]ᵀ (K, Og) · gy_b, scattered back by col2im;
//   gw: gw[group] (Og, K) += gy_b · colsᵀ (nb·P, K), cols = im2col(x) (or its
//       transpose, when K < Og: below).
void conv2d_backward(const TensorArg& gx, const TensorArg& gw, const TensorArg& gb, const TensorArg& gy,
                     const TensorArg& x, const TensorArg& w, const TensorArg& relu_out, const Conv2dParams& p) {
  const Geometry g = geometry(x, w, gy, p);
  const int64_t P = g.Ho * g.Wo;
  dispatch_f32_f64(x.dtype, "conv2d backward", [&](auto tag) {
    using T = decltype(tag);
    const DType dt = x.dtype;
    const T* gyp = gy.ptr<T>();
    const T* xp = x.ptr<T>();
    const T* wp = w.ptr<T>();
    const T* yp = relu_out.data ? relu_out.ptr<T>() : nullptr;
    T* gxp = gx.data ? gx.ptr<T>() : nullptr;
    if (gxp && !yp && !gw.data && !gb.data && pointwise(g, p)) {
      // 1×1, only the input's gradient: gx[n, group] (Cg, P) = w[group]ᵀ (Cg, Og) · gy[n, group] (Og, P),
      // straight from gy.
      maybe_parallel(g.N > 1 && !in_parallel(), [&] {
#pragma omp for schedule(static)
        for (int64_t n = 0; n < g.N; ++n)
          for (int64_t grp = 0; grp < p.groups; ++grp)
            gemm(g.K, P, g.Og, 1.0, matrix(wp + grp * g.Og * g.K, dt, g.K, g.Og, 1, g.K),
                 matrix(gyp + (n * g.O + grp * g.Og) * P, dt, g.Og, P, P, 1), 0.0,
                 matrix(gxp + (n * g.C + grp * g.Cg) * P, dt, g.K, P, P, 1));
      });
      return;
    }
    const Batching bt = batching(g, int64_t{sizeof(T)});
    const int64_t threads = bt.parallel ? max_threads() : 1;
    // The weight gradient's GEMM, gw[group] (Og, K) += gy_b · colsᵀ, is K columns
    // wide. A first layer's K is tiny (the cnn's conv1: 9), and the micro-kernel's
    // tiles are 32 columns wide: most of each would be padding (on the Zen 5 VM
    // this product ran at 24 GFLOP/s of one core's 203). Its transpose, gwᵀ (K, Og)
    // += cols · gy_bᵀ, puts the wider Og along the tiles instead (60 GFLOP/s); each
    // thread adds it into its gw, transposed back, once after its last batch.
    const bool transposed_gw = g.K < g.Og;
    // Every sample adds into gw and gb, so each thread sums its batches into its own
    // partial (thread 0 straight into the outputs) and the partials are added at the end.
    const int64_t gw_size = gw.data ? g.O * g.K : 0, gb_size = gb.data ? g.O : 0;
    Workspace<T> partials((threads - 1) * (gw_size + gb_size) + 1);
    std::fill_n(partials.data(), (threads - 1) * (gw_size + gb_size), T(0));  // a thread may get no batch
    maybe_parallel(threads > 1, [&] {
      const int64_t t = thread_index();
      T* gw_t = !gw_size ? nullptr : t == 0 ? gw.ptr<T>() : partials.data() + (t - 1) * (gw_size + gb_size);
      T* gb_t = !gb_size ? nullptr : t == 0 ? gb.ptr<T>() : partials.data() + (t - 1) * (gw_size + gb_size) + gw_size;
      if (t == 0) {
        if (gw_t) std::fill(gw_t, gw_t + gw_size, T(0));
        if (gb_t) std::fill(gb_t, gb_t + gb_size, T(0));
      }
      Workspace<T> cols(g.K * bt.B * P), gy_b(g.Og * bt.B * P);
      // This thread's weight gradient transposed, (K, Og) per group, when it is
      // computed that way (above); folded into gw_t after the last batch.
      const bool fold_transposed = gw_t && transposed_gw;
      Workspace<T> gw_transposed(fold_transposed ? p.groups * g.K * g.Og : 1);
      if (fold_transposed) std::fill_n(gw_transposed.data(), p.groups * g.K * g.Og, T(0));
#pragma omp for schedule(static)
      for (int64_t batch = 0; batch < bt.batches; ++batch) {
        const auto [n0, nb] = bt.range(batch);
        const int64_t ld = nb * P;
        if (gxp) std::fill(gxp + n0 * g.C * g.H * g.W, gxp + (n0 + nb) * g.C * g.H * g.W, T(0));
        for (int64_t grp = 0; grp < p.groups; ++grp) {
          // gy[n0 .. n0+nb, group] -> gy_b (Og, nb·P): masked by the ReLU, summed into gb.
          for (int64_t b = 0; b < nb; ++b)
            for (int64_t o = 0; o < g.Og; ++o) {
              const int64_t at = ((n0 + b) * g.O + grp * g.Og + o) * P;
              const T* src = gyp + at;
              T* dst = gy_b.data() + o * ld + b * P;
              if (yp) {
                const T* out = yp + at;
                for (int64_t q = 0; q < P; ++q) dst[q] = out[q] > T(0) ? src[q] : T(0);  // as relu_backward
              } else {
                std::copy_n(src, P, dst);
              }
              if (gb_t) gb_t[grp * g.Og + o] += lane_sum<T>(P, [dst](int64_t q) { return dst[q]; });
            }
          if (gxp) {
            gemm(g.K, ld, g.Og, 1.0, matrix(wp + grp * g.Og * g.K, dt, g.K, g.Og, 1, g.K),
                 matrix(gy_b.data(), dt, g.Og, ld, ld, 1), 0.0, matrix(cols.data(), dt, g.K, ld, ld, 1));
            for (int64_t b = 0; b < nb; ++b)
              col2im(gxp + ((n0 + b) * g.C + grp * g.Cg) * g.H * g.W, cols.data() + b * P, ld, g, p);
          }
          if (gw_t) {
            for (int64_t b = 0; b < nb; ++b)
              im2col(cols.data() + b * P, ld, xp + ((n0 + b) * g.C + grp * g.Cg) * g.H * g.W, g, p);
            if (transposed_gw)
              gemm(g.K, g.Og, ld, 1.0, matrix(cols.data(), dt, g.K, ld, ld, 1),
                   matrix(gy_b.data(), dt, ld, g.Og, 1, ld), 1.0,
                   matrix(gw_transposed.data() + grp * g.K * g.Og, dt, g.K, g.Og, g.Og, 1));
            else
              gemm(g.Og, g.K, ld, 1.0, matrix(gy_b.data(), dt, g.Og, ld, ld, 1),
                   matrix(cols.data(), dt, ld, g.K, 1, ld), 1.0,
                   matrix(gw_t + grp * g.Og * g.K, dt, g.Og, g.K, g.K, 1));
          }
        }
      }
      if (fold_transposed)
        for (int64_t grp = 0; grp < p.groups; ++grp)
          for (int64_t o = 0; o < g.Og; ++o)
            for (int64_t k = 0; k < g.K; ++k)
              gw_t[(grp * g.Og + o) * g.K + k] += gw_transposed.data()[(grp * g.K + k) * g.Og + o];
    });
    for (int64_t t = 1; t < threads; ++t) {
      const T* part = partials.data() + (t - 1) * (gw_size + gb_size);
      T* gwp = gw_size ? gw.ptr<T>() : nullptr;
      T* gbp = gb_size ? gb.ptr<T>() : nullptr;
      for (int64_t i = 0; i < gw_size; ++i) gwp[i] += part[i];
      for (int64_t i = 0; i < gb_size; ++i) gbp[i] += part[gw_size + i];
    }
  });
}

}  // namespace minidl::cpu
