// cuda/copy_kernels.cuh — the kernels of cuda/copy.cu: the strided, converting copy and the fill.
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

namespace minidl::cuda::copy_kernels {
namespace {

template <class D, class S>
__global__ void copy_kernel(TensorArg dst, TensorArg src, int64_t n) {
  D* d = dst.ptr<D>();
  const S* s = src.ptr<S>();
  // Through compute_t: bf16 converts to and from f32, like the CPU's copy.
  MINIDL_CUDA_FOR(i, n) d[offset_of(dst, i)] = D(static_cast<compute_t<S>>(s[offset_of(src, i)]));
}

template <class T>
__global__ void fill_kernel(TensorArg dst, T value, int64_t n) {
  T* d = dst.ptr<T>();
  MINIDL_CUDA_FOR(i, n) d[offset_of(dst, i)] = value;
}

}  // namespace
}  // namespace minidl::cuda::copy_kernels
