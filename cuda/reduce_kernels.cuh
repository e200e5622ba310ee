// cuda/reduce_kernels.cuh — the row reduction kernel of cuda/reduce.cu (sum,
// max / min with their indices, logsumexp, var), kept apart from its launcher so
// the CPU suite can also run it through tests/cuda_emulator.h
// (tests/test_cuda_emulated.cpp). In an unnamed namespace: each program that
// includes it gets its own copy.
#pragma once

#include <cmath>
#include <cstdint>

#include "cuda/device.cuh"
#include "ops/kernel_types.h"

namespace minidl::cuda::reduce {
namespace {

// The first extreme (lowest column) of what a thread has seen; a NaN beats
// everything, the first NaN beats later ones (as in PyTorch and on the CPU).
struct Extreme {
  int64_t index;
  double value;
  bool nan;
};

__device__ inline bool beats(const Extreme& a, const Extreme& b, bool is_max) {
  if (a.index < 0) return false;
  if (b.index < 0) return true;
  if (a.nan != b.nan) return a.nan;
  if (a.nan || a.value == b.value) return a.index < b.index;
  return is_max ? a.value > b.value : a.value < b.value;
}

template <class T>
__device__ double load(const T* row, int64_t c) {
  return static_cast<double>(static_cast<compute_t<T>>(row[c]));
}

template <class T>
__global__ void reduce_rows_kernel(ReduceOp op, TensorArg values, int64_t* indices, TensorArg x, double correction) {
  __shared__ double scratch[kWarp];
  __shared__ Extreme best[kThreads];
  const int64_t cols = x.shape[1];
  const T* row = x.ptr<T>() + blockIdx.x * cols;
  T& out = values.ptr<T>()[blockIdx.x];
  const int t = threadIdx.x, threads = blockDim.x;

  if (op == ReduceOp::max || op == ReduceOp::min) {
    const bool is_max = op == ReduceOp::max;
    Extreme mine{-1, 0.0, false};
    for (int64_t c = t; c < cols; c += threads) {
      const double v = load(row, c);
      const Extreme e{c, v, isnan(v)};
      if (beats(e, mine, is_max)) mine = e;
    }
    best[t] = mine;
    __syncthreads();
    for (int stride = threads / 2; stride > 0; stride /= 2) {  // threads is a power of two
      if (t < stride && beats(best[t + stride], best[t], is_max)) best[t] = best[t + stride];
      __syncthreads();
    }
    if (t == 0 && best[0].index >= 0) {  // an empty row has no extreme (the op layer refuses it)
      out = row[best[0].index];
      if (indices) indices[blockIdx.x] = best[0].index;
    }
    return;
  }

  double partial = 0;
  switch (op) {
    case ReduceOp::sum:
      for (int64_t c = t; c < cols; c += threads) partial += load(row, c);
      partial = block_sum(partial, scratch);
      if (t == 0) out = T(static_cast<compute_t<T>>(partial));
      return;
    case ReduceOp::logsumexp: {
      // log Σ e^x = m + log Σ e^(x − m), m = the row's max: no overflow for any finite x.
      double m = -INFINITY;
      int nans = 0;  // fmax drops NaNs: counted apart, a row with one gives NaN (as on the CPU)
      for (int64_t c = t; c < cols; c += threads) {
        const double v = load(row, c);
        nans += isnan(v);
        m = fmax(m, v);
      }
      m = block_max(m, scratch);
      if (block_sum(static_cast<double>(nans), scratch) > 0) m = NAN;
      if (isinf(m) || isnan(m)) {  // all −inf: −inf; a +inf: +inf; a NaN: NaN
        if (t == 0) out = T(static_cast<compute_t<T>>(m));
        return;
      }
      for (int64_t c = t; c < cols; c += threads) partial += exp(load(row, c) - m);
      partial = block_sum(partial, scratch);
      if (t == 0) out = T(static_cast<compute_t<T>>(m + log(partial)));
      return;
    }
    case ReduceOp::var: {
      // Two passes, the mean first, then squared deviations: no cancellation.
      for (int64_t c = t; c < cols; c += threads) partial += load(row, c);
      const double mean = block_sum(partial, scratch) / static_cast<double>(cols);
      partial = 0;
      for (int64_t c = t; c < cols; c += threads) {
        const double d = load(row, c) - mean;
        partial += d * d;
      }
      partial = block_sum(partial, scratch);
      const double denom = static_cast<double>(cols) - correction;
      if (t == 0) out = T(static_cast<compute_t<T>>(denom > 0 ? partial / denom : NAN));
      return;
    }
    default: return;
  }
}

}  // namespace
}  // namespace minidl::cuda::reduce
