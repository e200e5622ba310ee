// cuda/norm_kernels.cuh — the kernels of cuda/norm.cu: batch norm: the statistics, the normalisation and the backward.
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

namespace minidl::cuda::norm_kernels {
namespace {

struct Dims {
  int64_t N, C, L;
};
Dims dims_of(const TensorArg& x) { return {x.shape[0], x.shape[1], x.shape[2]}; }

// Position of the j-th value (0 ≤ j < N·L) of channel c.
__device__ inline int64_t channel_at(const Dims& d, int64_t c, int64_t j) {
  return ((j / d.L) * d.C + c) * d.L + j % d.L;
}

template <class T>
__global__ void stats_kernel(T* mean, T* var, const T* x, Dims d) {
  __shared__ double scratch[kWarp];
  const int64_t c = blockIdx.x, M = d.N * d.L;
  // Two passes: the mean, then squared deviations (no cancellation).
  double s = 0;
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x) s += static_cast<double>(x[channel_at(d, c, j)]);
  const double mu = block_sum(s, scratch) / static_cast<double>(M);
  double ss = 0;
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
    const double dev = static_cast<double>(x[channel_at(d, c, j)]) - mu;
    ss += dev * dev;
  }
  ss = block_sum(ss, scratch);
  if (threadIdx.x == 0) {
    mean[c] = static_cast<T>(mu);
    var[c] = static_cast<T>(ss / static_cast<double>(M));  // biased: what normalisation uses
  }
}

// y = (x − mean) · invstd · w + b = x · scale + shift
template <class T>
__global__ void apply_kernel(T* y, const T* x, const T* mean, const T* invstd, const T* weight, const T* bias, Dims d) {
  MINIDL_CUDA_FOR(i, d.N * d.C * d.L) {
    const int64_t c = (i / d.L) % d.C;
    const T scale = invstd[c] * (weight ? weight[c] : T(1));
    const T shift = (bias ? bias[c] : T(0)) - mean[c] * scale;
    y[i] = x[i] * scale + shift;
  }
}

// Per channel: Σ dy and Σ dy·x̂, then (training) dx = w·invstd·(dy − mean(dy) − x̂·mean(dy·x̂)),
// (eval) dx = w·invstd·dy.
template <class T>
__global__ void backward_kernel(T* gx, T* gw, T* gb, const T* gy, const T* x, const T* mean, const T* invstd,
                                const T* weight, Dims d, bool training) {
  __shared__ double scratch[kWarp];
  const int64_t c = blockIdx.x, M = d.N * d.L;
  const double mu = mean[c], is = invstd[c];
  double sum_dy = 0, sum_dy_xhat = 0;
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
    const int64_t at = channel_at(d, c, j);
    const double g = gy[at];
    sum_dy += g;
    sum_dy_xhat += g * (static_cast<double>(x[at]) - mu) * is;
  }
  sum_dy = block_sum(sum_dy, scratch);
  sum_dy_xhat = block_sum(sum_dy_xhat, scratch);
  if (threadIdx.x == 0) {
    if (gw) gw[c] = static_cast<T>(sum_dy_xhat);
    if (gb) gb[c] = static_cast<T>(sum_dy);
  }
  if (!gx) return;
  const double k = (weight ? static_cast<double>(weight[c]) : 1.0) * is;
  const double mean_dy = training ? sum_dy / static_cast<double>(M) : 0;
  const double mean_dy_xhat = training ? sum_dy_xhat / static_cast<double>(M) : 0;
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
    const int64_t at = channel_at(d, c, j);
    const double xhat = (static_cast<double>(x[at]) - mu) * is;
    gx[at] = static_cast<T>(k * (static_cast<double>(gy[at]) - mean_dy - xhat * mean_dy_xhat));
  }
}

}  // namespace
}  // namespace minidl::cuda::norm_kernels
