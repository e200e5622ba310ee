// cuda/index_kernels.cuh — the kernels of cuda/index.cu: index_select / index_add, gather / scatter_add and the range check.
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

namespace minidl::cuda::index_kernels {
namespace {

// x viewed as (outer, size, inner); out (outer, n, inner) := x[:, index, :]
template <class T>
__global__ void index_select_kernel(T* out, const T* x, const int64_t* index, int64_t size, int64_t n, int64_t inner,
                                    int64_t total) {
  MINIDL_CUDA_FOR(i, total) {
    const int64_t k = i % inner, j = (i / inner) % n, o = i / (inner * n);
    out[i] = x[(o * size + index[j]) * inner + k];
  }
}

template <class T>
__global__ void index_add_kernel(T* out, const T* src, const int64_t* index, int64_t size, int64_t n, int64_t inner,
                                 int64_t total) {
  MINIDL_CUDA_FOR(i, total) {
    const int64_t k = i % inner, j = (i / inner) % n, o = i / (inner * n);
    atomicAdd(out + (o * size + index[j]) * inner + k, src[i]);
  }
}

// The position in a contiguous tensor of shape target.shape with the
// coordinates of element i of `index`, except along dim, which takes index[i].
__device__ inline int64_t indexed_position(const TensorArg& index, const TensorArg& target, int dim, int64_t i) {
  const int64_t* idx = index.ptr<int64_t>();
  int64_t rest = i, pos = 0, stride = 1;
  for (int d = index.ndim - 1; d >= 0; --d) {
    const int64_t coord = rest % index.shape[d];
    rest /= index.shape[d];
    pos += (d == dim ? idx[i] : coord) * stride;
    stride *= target.shape[d];
  }
  return pos;
}

template <class T>
__global__ void gather_kernel(TensorArg out, TensorArg x, TensorArg index, int dim, int64_t n) {
  MINIDL_CUDA_FOR(i, n) out.ptr<T>()[i] = x.ptr<T>()[indexed_position(index, x, dim, i)];
}

template <class T>
__global__ void scatter_add_kernel(TensorArg out, TensorArg index, TensorArg src, int dim, int64_t n) {
  MINIDL_CUDA_FOR(i, n) atomicAdd(out.ptr<T>() + indexed_position(index, out, dim, i), src.ptr<T>()[i]);
}

// status starts as all ones (−1 as int64, the largest value as unsigned); every
// bad position does an atomicMin, so it ends as the first bad position or −1.
__global__ void out_of_range_kernel(unsigned long long* status, const int64_t* index, int64_t n, int64_t size,
                                    int64_t allowed) {
  MINIDL_CUDA_FOR(i, n) {
    const int64_t v = index[i];
    if ((v < 0 || v >= size) && v != allowed) atomicMin(status, static_cast<unsigned long long>(i));
  }
}

}  // namespace
}  // namespace minidl::cuda::index_kernels
