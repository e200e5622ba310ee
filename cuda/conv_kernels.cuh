// cuda/conv_kernels.cuh — the kernels of cuda/conv.cu: the convolution's own kernels: im2col, col2im, the ReLU mask, the bias gradient.
//
// Kept apart from their launchers so that two programs compile them: nvcc, for
// the GPU, and the host compiler through tests/cuda_emulator.h, so the CPU
// suite checks them against the CPU kernels on machines without a GPU
// (tests/test_cuda_emulated.cpp). In an unnamed namespace: each program that
// includes this header gets its own copy.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

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
  MINIDL_HOST_DEVICE int64_t positions() const { return Ho * Wo; }
};

// col (C·kh·kw, Ho·Wo) of one sample, all groups stacked: row (c, i, j), column (oh, ow)
// = x[c, oh·sh − ph + i·dh, ow·sw − pw + j·dw], or 0 in the padding.
template <class T>
__global__ void im2col_kernel(T* col, const T* x, Shape s, Conv2dParams p) {
  MINIDL_CUDA_FOR(e, s.C * s.kh * s.kw * s.positions()) {
    const int64_t ow = e % s.Wo, oh = (e / s.Wo) % s.Ho, r = e / s.positions();
    const int64_t j = r % s.kw, i = (r / s.kw) % s.kh, c = r / (s.kw * s.kh);
    const int64_t h = oh * p.stride_h - p.pad_h + i * p.dilation_h, w = ow * p.stride_w - p.pad_w + j * p.dilation_w;
    col[e] = h >= 0 && h < s.H && w >= 0 && w < s.W ? x[(c * s.H + h) * s.W + w] : T(0);
  }
}

// gx[c, h, w] = Σ over the (i, j) and (oh, ow) with oh·sh − ph + i·dh = h (likewise w) of gcol[(c, i, j), (oh, ow)].
template <class T>
__global__ void col2im_kernel(T* gx, const T* gcol, Shape s, Conv2dParams p) {
  MINIDL_CUDA_FOR(e, s.C * s.H * s.W) {
    const int64_t w = e % s.W, h = (e / s.W) % s.H, c = e / (s.W * s.H);
    T acc = 0;
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t hh = h + p.pad_h - i * p.dilation_h;  // = oh · stride_h
      if (hh < 0 || hh % p.stride_h != 0 || hh / p.stride_h >= s.Ho) continue;
      const int64_t oh = hh / p.stride_h;
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t ww = w + p.pad_w - j * p.dilation_w;
        if (ww < 0 || ww % p.stride_w != 0 || ww / p.stride_w >= s.Wo) continue;
        acc += gcol[((c * s.kh + i) * s.kw + j) * s.positions() + oh * s.Wo + ww / p.stride_w];
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

}  // namespace
}  // namespace minidl::cuda::conv_kernels
