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
#include "cuda/reduce_kernels.cuh"
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

// Channels are reduced one block each, or — few channels of many values (the
// first stage of a network: 32 channels of N·28·28) — `parts` blocks each, as
// the row reductions split few long rows (cuda/reduce_kernels.cuh, whose
// Partial and combine these kernels share): block b takes part b % parts of
// channel b / parts, values [begin, end) of its M = N·L (reduce::share_of).
// How many parts: from the shape alone (reduce::split_count), so the rounding
// is the same on every GPU.

// The mean and (biased) variance of each channel. Two passes over a block's
// values: their mean, then squared deviations from it (no cancellation). One
// part: the answer; several: the part's (count, mean, M2), for stats_combine_kernel.
template <class T>
__global__ void stats_kernel(T* mean, T* var, const T* x, Dims d, int64_t parts, reduce::Partial* partials) {
  __shared__ double scratch[kWarp];
  const reduce::Share share = reduce::share_of(d.N * d.L, parts);
  const int64_t c = share.row;
  const int64_t n = share.end - share.begin;
  double s = 0;
  for (int64_t j = share.begin + threadIdx.x; j < share.end; j += blockDim.x) s += static_cast<double>(x[channel_at(d, c, j)]);
  const double mu = n > 0 ? block_sum(s, scratch) / static_cast<double>(n) : 0.0;
  double ss = 0;
  for (int64_t j = share.begin + threadIdx.x; j < share.end; j += blockDim.x) {
    const double dev = static_cast<double>(x[channel_at(d, c, j)]) - mu;
    ss += dev * dev;
  }
  ss = block_sum(ss, scratch);
  if (threadIdx.x != 0) return;
  if (parts > 1) {
    partials[blockIdx.x] = {mu, ss, n, false};
    return;
  }
  mean[c] = static_cast<T>(mu);
  var[c] = static_cast<T>(ss / static_cast<double>(n));  // biased: what normalisation uses
}

// Block c combines channel c's parts (Chan's pairwise update, reduce::combine).
template <class T>
__global__ void stats_combine_kernel(T* mean, T* var, int64_t parts, const reduce::Partial* partials) {
  __shared__ reduce::Partial tree[kThreads];
  const int64_t c = blockIdx.x;
  const reduce::Partial all = reduce::combine_parts(ReduceOp::var, partials + c * parts, parts, tree);
  if (threadIdx.x != 0) return;
  mean[c] = static_cast<T>(all.a);
  var[c] = static_cast<T>(all.b / static_cast<double>(all.n));
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

// dx = w·invstd·(dy − mean(dy) − x̂·mean(dy·x̂)) when training (the batch's
// statistics depend on x), w·invstd·dy in eval; sum_dy and sum_dy_xhat are the
// channel's Σ dy and Σ dy·x̂ over its M values.
template <class T>
__device__ T input_grad(T g, T xv, double mu, double is, double w, double sum_dy, double sum_dy_xhat, double M,
                        bool training) {
  const double mean_dy = training ? sum_dy / M : 0, mean_dy_xhat = training ? sum_dy_xhat / M : 0;
  const double xhat = (static_cast<double>(xv) - mu) * is;
  return static_cast<T>(w * is * (static_cast<double>(g) - mean_dy - xhat * mean_dy_xhat));
}

// Per channel: Σ dy (the bias's gradient) and Σ dy·x̂ (the weight's), then dx.
// One part: all three by this block; several: each block its part's two sums,
// for backward_combine_kernel (and then backward_input_kernel).
template <class T>
__global__ void backward_kernel(T* gx, T* gw, T* gb, const T* gy, const T* x, const T* mean, const T* invstd,
                                const T* weight, Dims d, bool training, int64_t parts, reduce::Partial* partials) {
  __shared__ double scratch[kWarp];
  const reduce::Share share = reduce::share_of(d.N * d.L, parts);
  const int64_t c = share.row;
  const double mu = mean[c], is = invstd[c];
  double sum_dy = 0, sum_dy_xhat = 0;
  for (int64_t j = share.begin + threadIdx.x; j < share.end; j += blockDim.x) {
    const int64_t at = channel_at(d, c, j);
    const double g = gy[at];
    sum_dy += g;
    sum_dy_xhat += g * (static_cast<double>(x[at]) - mu) * is;
  }
  sum_dy = block_sum(sum_dy, scratch);
  sum_dy_xhat = block_sum(sum_dy_xhat, scratch);
  if (parts > 1) {
    if (threadIdx.x == 0) partials[blockIdx.x] = {sum_dy, sum_dy_xhat, 0, false};
    return;
  }
  if (threadIdx.x == 0) {
    if (gw) gw[c] = static_cast<T>(sum_dy_xhat);
    if (gb) gb[c] = static_cast<T>(sum_dy);
  }
  if (!gx) return;
  const double w = weight ? static_cast<double>(weight[c]) : 1.0, M = static_cast<double>(d.N * d.L);
  for (int64_t j = threadIdx.x; j < d.N * d.L; j += blockDim.x) {
    const int64_t at = channel_at(d, c, j);
    gx[at] = input_grad(gy[at], x[at], mu, is, w, sum_dy, sum_dy_xhat, M, training);
  }
}

// Block c adds channel c's parts' sums (in a fixed order), writes the weight's
// and the bias's gradients, and leaves the two sums in the channel's first
// part for backward_input_kernel.
template <class T>
__global__ void backward_combine_kernel(T* gw, T* gb, int64_t parts, reduce::Partial* partials) {
  __shared__ reduce::Partial tree[kThreads];
  const int64_t c = blockIdx.x;
  // (ends at a barrier: every part has been read before thread 0 overwrites the first)
  const reduce::Partial all = reduce::combine_parts(ReduceOp::sum, partials + c * parts, parts, tree);
  if (threadIdx.x != 0) return;
  if (gw) gw[c] = static_cast<T>(all.b);
  if (gb) gb[c] = static_cast<T>(all.a);
  partials[c * parts] = all;
}

// dx, one thread per element, from its channel's sums (partials[c · parts]).
template <class T>
__global__ void backward_input_kernel(T* gx, const T* gy, const T* x, const T* mean, const T* invstd, const T* weight,
                                      Dims d, bool training, int64_t parts, const reduce::Partial* partials) {
  const double M = static_cast<double>(d.N * d.L);
  MINIDL_CUDA_FOR(i, d.N * d.C * d.L) {
    const int64_t c = (i / d.L) % d.C;
    const reduce::Partial& sums = partials[c * parts];
    gx[i] = input_grad(gy[i], x[i], static_cast<double>(mean[c]), static_cast<double>(invstd[c]),
                       weight ? static_cast<double>(weight[c]) : 1.0, sums.a, sums.b, M, training);
  }
}

}  // namespace
}  // namespace minidl::cuda::norm_kernels
