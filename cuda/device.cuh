// cuda/device.cuh — the device-side pieces every kernel file shares: a strided
// tensor's element offset, the grid-stride loop, warp and block reductions.
//
// No CUDA runtime header: compiled by nvcc through cuda/common.cuh, and by the
// host compiler through tests/cuda_emulator.h, which supplies blockIdx,
// __syncthreads and __shfl_xor_sync, so the CPU suite can run the kernels built
// on these (tests/test_cuda_emulated.cpp).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/kernel_arg.h"

#if !defined(__CUDACC__) && !defined(MINIDL_CUDA_EMULATOR)
#error "cuda/device.cuh is compiled by nvcc, or by the host compiler after tests/cuda_emulator.h"
#endif

namespace minidl::cuda {

// The device math functions live in the global namespace; named here, minidl's
// tensor ops of the same names (minidl::exp, log, max, ...) never hide them in a file
// that includes both (the emulated tests).
using ::erf;
using ::exp;
using ::log;
using ::max;
using ::min;
using ::pow;
using ::sqrt;
using ::tanh;

inline constexpr int kThreads = 256;  // threads per block of the elementwise kernels
inline constexpr int kWarp = 32;

// The block width of the one-block-per-row kernels (reductions, softmax, the
// losses) for a row of `cols`: a power of two from 32 to 256, so a 10-class row
// gets one warp and a long row the most threads. Host code.
inline int row_threads(int64_t cols) {
  int threads = kWarp;
  while (threads < kThreads && threads < cols) threads *= 2;
  return threads;
}

// The offset (in elements) of the i-th element, in row-major order, of a tensor
// with any strides: peel off one coordinate per dimension, last dimension first.
__device__ inline int64_t offset_of(const TensorArg& t, int64_t i) {
  int64_t offset = 0;
  for (int d = t.ndim - 1; d >= 0; --d) {
    const int64_t size = t.shape[d];
    offset += (i % size) * t.strides[d];
    i /= size;
  }
  return offset;
}

// for (i = this thread; i < n; i += every thread) — the grid-stride loop.
#define MINIDL_CUDA_FOR(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

// Sums / maxima across the 32 lanes of a warp; every lane gets the result.
template <class T>
__device__ inline T warp_sum(T v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <class T>
__device__ inline T warp_max(T v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// A block-wide reduction: each warp reduces (warp_reduce), lane 0 of each warp
// parks its partial in shared memory, warp 0's lanes reduce those. Every thread
// of the block gets the result. `scratch` holds at least 32 values; the call
// ends with a barrier, so the same scratch serves the next reduction.
template <class T, class Warp>
__device__ inline T block_reduce(T v, T* scratch, T identity, Warp warp_reduce) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp, warps = (blockDim.x + kWarp - 1) / kWarp;
  v = warp_reduce(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = warp_reduce(lane < warps ? scratch[lane] : identity);
  __syncthreads();
  return v;
}
template <class T>
__device__ inline T block_sum(T v, T* scratch) {
  return block_reduce(v, scratch, T(0), [](T x) { return warp_sum(x); });
}
template <class T>
__device__ inline T block_max(T v, T* scratch) {
  return block_reduce(v, scratch, T(-INFINITY), [](T x) { return warp_max(x); });
}

}  // namespace minidl::cuda
