// cuda/conv_kernels.cuh — the convolution's kernels (im2col, col2im, the ReLU
// mask, the bias gradient) and the host loop that strings them and the GEMMs
// together over chunks of samples.
//
// Kept apart from cuda/conv.cu so that two programs compile them: nvcc, for
// the GPU, and the host compiler through tests/cuda_emulator.h, so the CPU
// suite checks them against the CPU's convolution on machines without a GPU
// (tests/test_cuda_emulated.cpp). The host loop is a template over `Run`, the
// thing that launches: cuda/conv.cu's launches kernels and calls cuda::gemm,
// the test's runs the kernels on the emulator and calls cpu::gemm — the same
// chunking, group offsets and permutes either way. In an unnamed namespace:
// each program that includes this header gets its own copy.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "core/kernel_arg.h"
#include "cuda/device.cuh"
#include "cuda/reduce_kernels.cuh"
#include "ops/kernel_types.h"

namespace minidl::cuda::conv_kernels {
namespace {

struct Shape {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo, G;
  MINIDL_HOST_DEVICE int64_t cg() const { return C / G; }              // input channels per group
  MINIDL_HOST_DEVICE int64_t og() const { return O / G; }              // output channels per group
  MINIDL_HOST_DEVICE int64_t rows() const { return cg() * kh * kw; }   // of the column matrix (one group)
  MINIDL_HOST_DEVICE int64_t all_rows() const { return C * kh * kw; }  // of the column matrix (all groups)
  MINIDL_HOST_DEVICE int64_t positions() const { return Ho * Wo; }
};

// col (C·kh·kw, B·Ho·Wo) of B samples side by side, all groups stacked: row
// (c, i, j), column (b, oh, ow) = x[b, c, oh·sh − ph + i·dh, ow·sw − pw + j·dw],
// or 0 in the padding. x points at the first of the B samples.
template <class T>
__global__ void im2col_kernel(T* col, const T* x, Shape s, Conv2dParams p, int64_t samples) {
  const int64_t cols = samples * s.positions();
  MINIDL_CUDA_FOR(e, s.all_rows() * cols) {
    const int64_t ow = e % s.Wo, oh = (e / s.Wo) % s.Ho, b = (e % cols) / s.positions(), r = e / cols;
    const int64_t j = r % s.kw, i = (r / s.kw) % s.kh, c = r / (s.kw * s.kh);
    const int64_t h = oh * p.stride_h - p.pad_h + i * p.dilation_h, w = ow * p.stride_w - p.pad_w + j * p.dilation_w;
    col[e] = h >= 0 && h < s.H && w >= 0 && w < s.W ? x[((b * s.C + c) * s.H + h) * s.W + w] : T(0);
  }
}

// gx[b, c, h, w] = Σ over the (i, j) and (oh, ow) with oh·sh − ph + i·dh = h
// (likewise w) of gcol[(c, i, j), (b, oh, ow)]: im2col's adjoint, for B samples.
template <class T>
__global__ void col2im_kernel(T* gx, const T* gcol, Shape s, Conv2dParams p, int64_t samples) {
  const int64_t cols = samples * s.positions();
  MINIDL_CUDA_FOR(e, samples * s.C * s.H * s.W) {
    const int64_t w = e % s.W, h = (e / s.W) % s.H, c = (e / (s.W * s.H)) % s.C, b = e / (s.C * s.H * s.W);
    const T* gcol_b = gcol + b * s.positions();
    T acc = 0;
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t hh = h + p.pad_h - i * p.dilation_h;  // = oh · stride_h
      if (hh < 0 || hh % p.stride_h != 0 || hh / p.stride_h >= s.Ho) continue;
      const int64_t oh = hh / p.stride_h;
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t ww = w + p.pad_w - j * p.dilation_w;
        if (ww < 0 || ww % p.stride_w != 0 || ww / p.stride_w >= s.Wo) continue;
        acc += gcol_b[((c * s.kh + i) * s.kw + j) * cols + oh * s.Wo + ww / p.stride_w];
      }
    }
    gx[e] = acc;
  }
}

// g := g where y > 0, else 0 (the gradient through a fused ReLU).
template <class T>
__global__ void relu_mask_kernel(T* out, const T* g, const T* y, int64_t n) {
  MINIDL_CUDA_FOR(i, n) out[i] = y[i] > T(0) ? g[i] : T(0);
}

// gb[o] = Σ_{n, p} gy[n, o, p], reduced in double: one block per output
// channel, or — few channels of many values (32 channels of 128·28·28 in the
// cnn's first layer) — `parts` blocks per channel, each writing its part's sum
// for reduce::sum_parts_kernel (the split of cuda/reduce_kernels.cuh).
template <class T>
__global__ void bias_grad_kernel(T* gb, const T* gy, Shape s, int64_t parts, reduce::Partial* partials) {
  __shared__ double scratch[kWarp];
  const int64_t P = s.positions();
  const reduce::Share share = reduce::share_of(s.N * P, parts);
  const int64_t o = share.row;
  double acc = 0;
  for (int64_t j = share.begin + threadIdx.x; j < share.end; j += blockDim.x)
    acc += static_cast<double>(gy[((j / P) * s.O + o) * P + j % P]);
  acc = block_sum(acc, scratch);
  if (threadIdx.x != 0) return;
  if (parts == 1) gb[o] = static_cast<T>(acc);
  else partials[blockIdx.x] = {acc, 0, 0, false};
}

// ---- The host loop: chunks of samples, a GEMM per group --------------------
//
// One im2col and one GEMM per sample and group made a batch of 128 small
// images hundreds of launches of a few microseconds of work each: launch-bound.
// So the samples go in chunks of B. im2col writes the chunk's columns side by
// side, col (C·kh·kw, B·P) with P = Ho·Wo, and each group's product covers the
// whole chunk at once:
//
//   forward   out_g (O/G, B·P)        = W_g · col_g            (bias, ReLU in the epilogue)
//   weight    gW_g  (O/G, C/G·kh·kw) += gy_g (O/G, B·P) · col_gᵀ
//   input     gcol_g (C/G·kh·kw, B·P) = W_gᵀ · gy_g,   then col2im into gx
//
// The GEMM's (O, B·P) is channel-major, y's (B, O, P) sample-major: one
// permuting copy per chunk turns one into the other (out → y in the forward,
// gy → gy_packed in the backward). A chunk of one sample needs none: its
// (O, P) is y[n]'s own layout.

// The column buffer's budget: a chunk is as many samples as fit in it (at
// least one). 64 MiB holds the columns of 74 28×28 images through a 3×3
// convolution of 32 channels (288 rows × 784 positions × 4 bytes: 0.9 MiB
// each), of a whole batch of 128 at 14×14; the caching allocator keeps it
// from one call to the next.
constexpr size_t kColumnBudget = size_t{64} << 20;

inline int64_t samples_per_chunk(const Shape& s, size_t element_size, size_t budget = kColumnBudget) {
  const size_t per_sample = static_cast<size_t>(s.all_rows() * s.positions()) * element_size;
  const auto fit = static_cast<int64_t>(budget / std::max<size_t>(per_sample, 1));
  return std::clamp<int64_t>(fit, 1, std::max<int64_t>(s.N, 1));
}

// A (rows, cols) row-major matrix at `data` with row stride ld, as a GEMM operand.
template <class T>
TensorArg matrix(const T* data, int64_t rows, int64_t cols, int64_t ld) {
  TensorArg a;
  a.data = const_cast<T*>(data);
  a.dtype = dtype_of<T>::value;
  a.ndim = 2;
  a.shape[0] = rows, a.shape[1] = cols;
  a.strides[0] = ld, a.strides[1] = 1;
  return a;
}
inline TensorArg transposed(TensorArg a) {
  std::swap(a.shape[0], a.shape[1]);
  std::swap(a.strides[0], a.strides[1]);
  return a;
}
// B samples of (O, P) values seen as an (O, B, P) tensor, laid out as y's
// (B, O, P) (by_sample) or as the GEMM's (O, B·P) (not): copying one view into
// the other is the permute.
template <class T>
TensorArg channels_of(const T* data, int64_t B, int64_t O, int64_t P, bool by_sample) {
  TensorArg a;
  a.data = const_cast<T*>(data);
  a.dtype = dtype_of<T>::value;
  a.ndim = 3;
  a.shape[0] = O, a.shape[1] = B, a.shape[2] = P;
  a.strides[0] = by_sample ? P : B * P, a.strides[1] = by_sample ? O * P : P, a.strides[2] = 1;
  return a;
}

// y (N, O, P) := conv(x, w) + bias, ReLU'd if p.relu. col: chunk · C·kh·kw · P
// elements of scratch; out: chunk · O · P (unused when chunk is 1).
template <class T, class Run>
void forward_chunks(const Run& run, T* y, const T* x, const T* w, const T* bias, const Shape& s, const Conv2dParams& p,
                    int64_t chunk, T* col, T* out) {
  const int64_t P = s.positions(), og = s.og(), rows = s.rows();
  for (int64_t n0 = 0; n0 < s.N; n0 += chunk) {
    const int64_t B = std::min(chunk, s.N - n0), cols = B * P;
    T* y_chunk = y + n0 * s.O * P;
    T* dst = B == 1 ? y_chunk : out;  // (O, B·P)
    run.im2col(col, x + n0 * s.C * s.H * s.W, s, p, B);
    for (int64_t g = 0; g < s.G; ++g) {
      GemmEpilogue epilogue;  // bias per output channel = per row of out_g, then the fused ReLU
      epilogue.bias = bias ? bias + g * og : nullptr;
      epilogue.bias_per_row = true;
      epilogue.relu = p.relu;
      run.gemm(og, cols, rows, 1.0, matrix(w + g * og * rows, og, rows, rows),
               matrix(col + g * rows * cols, rows, cols, cols), 0.0, matrix(dst + g * og * cols, og, cols, cols),
               epilogue);
    }
    if (B > 1) run.copy(channels_of(y_chunk, B, s.O, P, true), channels_of(out, B, s.O, P, false));
  }
}

// gx (N, C, H, W) and gw (O, C/G, kh, kw) from gy (N, O, P); either may be null.
// gw is overwritten (beta = 0 on the first chunk, then summed into). col as in
// the forward (it holds gcol after the weight gradient has read it); gy_packed:
// chunk · O · P elements (unused when chunk is 1).
template <class T, class Run>
void backward_chunks(const Run& run, T* gx, T* gw, const T* gy, const T* x, const T* w, const Shape& s,
                     const Conv2dParams& p, int64_t chunk, T* col, T* gy_packed) {
  const int64_t P = s.positions(), og = s.og(), rows = s.rows();
  for (int64_t n0 = 0; n0 < s.N; n0 += chunk) {
    const int64_t B = std::min(chunk, s.N - n0), cols = B * P;
    const T* g_chunk = gy + n0 * s.O * P;  // (O, B·P) once packed
    if (B > 1) {
      run.copy(channels_of(gy_packed, B, s.O, P, false), channels_of(g_chunk, B, s.O, P, true));
      g_chunk = gy_packed;
    }
    if (gw) {
      run.im2col(col, x + n0 * s.C * s.H * s.W, s, p, B);
      for (int64_t g = 0; g < s.G; ++g)
        run.gemm(og, rows, cols, 1.0, matrix(g_chunk + g * og * cols, og, cols, cols),
                 transposed(matrix(col + g * rows * cols, rows, cols, cols)), n0 == 0 ? 0.0 : 1.0,
                 matrix(gw + g * og * rows, og, rows, rows));
    }
    if (gx) {
      for (int64_t g = 0; g < s.G; ++g)
        run.gemm(rows, cols, og, 1.0, transposed(matrix(w + g * og * rows, og, rows, rows)),
                 matrix(g_chunk + g * og * cols, og, cols, cols), 0.0, matrix(col + g * rows * cols, rows, cols, cols));
      run.col2im(gx + n0 * s.C * s.H * s.W, col, s, p, B);
    }
  }
}

}  // namespace
}  // namespace minidl::cuda::conv_kernels
