// cuda/pool_kernels.cuh — the kernels of cuda/pool.cu: pooling (max with its winners, average, adaptive average), forward and backward.
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
#include "ops/kernel_types.h"

namespace minidl::cuda::pool_kernels {
namespace {

struct Planes {
  int64_t planes, H, W, Ho, Wo;
};
Planes planes_of(const TensorArg& x, const TensorArg& y) {
  return {x.shape[0] * x.shape[1], x.shape[2], x.shape[3], y.shape[2], y.shape[3]};
}

// A window [h0, h1) × [w0, w1) and the divisor of its mean.
struct Window {
  int64_t h0, h1, w0, w1, divisor;
};

// avg_pool2d's window of output (oh, ow): kernel-sized, stride steps, clipped.
__device__ inline Window fixed_window(const Planes& s, const Pool2dParams& p, int64_t oh, int64_t ow) {
  int64_t h0 = oh * p.stride_h - p.pad_h, w0 = ow * p.stride_w - p.pad_w;
  int64_t h1 = min(h0 + p.kernel_h, s.H + p.pad_h), w1 = min(w0 + p.kernel_w, s.W + p.pad_w);
  const int64_t padded_area = (h1 - h0) * (w1 - w0);
  h0 = max(h0, int64_t(0)), w0 = max(w0, int64_t(0));
  h1 = min(h1, s.H), w1 = min(w1, s.W);
  return {h0, h1, w0, w1, p.count_include_pad ? padded_area : (h1 - h0) * (w1 - w0)};
}

// adaptive_avg_pool2d's: rows [floor(oh·H/Ho), ceil((oh + 1)·H/Ho)), likewise columns.
__device__ inline Window adaptive_window(const Planes& s, int64_t oh, int64_t ow) {
  const int64_t h0 = oh * s.H / s.Ho, h1 = ((oh + 1) * s.H + s.Ho - 1) / s.Ho;
  const int64_t w0 = ow * s.W / s.Wo, w1 = ((ow + 1) * s.W + s.Wo - 1) / s.Wo;
  return {h0, h1, w0, w1, (h1 - h0) * (w1 - w0)};
}

// The first largest element wins; a NaN wins over numbers and the first NaN stays (as on the CPU).
template <class T>
__global__ void max_pool_kernel(T* y, int32_t* argmax, const T* x, Planes s, Pool2dParams p) {
  MINIDL_CUDA_FOR(o, s.planes * s.Ho * s.Wo) {
    const int64_t ow = o % s.Wo, oh = (o / s.Wo) % s.Ho, plane = o / (s.Wo * s.Ho);
    const T* in = x + plane * s.H * s.W;
    const int64_t h0 = max(oh * p.stride_h - p.pad_h, int64_t(0)), h1 = min(oh * p.stride_h - p.pad_h + p.kernel_h, s.H);
    const int64_t w0 = max(ow * p.stride_w - p.pad_w, int64_t(0)), w1 = min(ow * p.stride_w - p.pad_w + p.kernel_w, s.W);
    int64_t arg = h0 * s.W + w0;
    T best = in[arg];
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t w = w0; w < w1; ++w) {
        const T v = in[h * s.W + w];
        if (((v > best) || (v != v)) && best == best) best = v, arg = h * s.W + w;
      }
    y[o] = best;
    if (argmax) argmax[o] = static_cast<int32_t>(arg);
  }
}

template <class T>
__global__ void max_pool_backward_kernel(T* gx, const T* gy, const int32_t* argmax, Planes s) {
  MINIDL_CUDA_FOR(o, s.planes * s.Ho * s.Wo) {
    const int64_t plane = o / (s.Ho * s.Wo);
    atomicAdd(gx + plane * s.H * s.W + argmax[o], gy[o]);
  }
}

template <class T, bool kAdaptive>
__global__ void avg_pool_kernel(T* y, const T* x, Planes s, Pool2dParams p) {
  MINIDL_CUDA_FOR(o, s.planes * s.Ho * s.Wo) {
    const int64_t ow = o % s.Wo, oh = (o / s.Wo) % s.Ho, plane = o / (s.Wo * s.Ho);
    const Window win = kAdaptive ? adaptive_window(s, oh, ow) : fixed_window(s, p, oh, ow);
    const T* in = x + plane * s.H * s.W;
    T acc = 0;
    for (int64_t h = win.h0; h < win.h1; ++h)
      for (int64_t w = win.w0; w < win.w1; ++w) acc += in[h * s.W + w];
    y[o] = acc / T(win.divisor);
  }
}

template <class T, bool kAdaptive>
__global__ void avg_pool_backward_kernel(T* gx, const T* gy, Planes s, Pool2dParams p) {
  MINIDL_CUDA_FOR(o, s.planes * s.Ho * s.Wo) {
    const int64_t ow = o % s.Wo, oh = (o / s.Wo) % s.Ho, plane = o / (s.Wo * s.Ho);
    const Window win = kAdaptive ? adaptive_window(s, oh, ow) : fixed_window(s, p, oh, ow);
    const T g = gy[o] / T(win.divisor);
    T* out = gx + plane * s.H * s.W;
    for (int64_t h = win.h0; h < win.h1; ++h)
      for (int64_t w = win.w0; w < win.w1; ++w) atomicAdd(out + h * s.W + w, g);
  }
}

}  // namespace
}  // namespace minidl::cuda::pool_kernels
