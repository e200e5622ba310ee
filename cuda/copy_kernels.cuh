// cuda/copy_kernels.cuh — the kernels of cuda/copy.cu: the strided, converting copy, the fill and
// dropout's mask.
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

#include "core/philox.h"
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

// Dropout's mask, drawn where it is used: each thread computes its elements'
// random bits from their index (core/philox.h), so nothing is drawn on the host
// and uploaded, and the mask is the CPU's bit for bit.
template <class T>
__global__ void dropout_mask_kernel(T* keep, int64_t n, uint64_t key, uint32_t threshold, T scale) {
  MINIDL_CUDA_FOR(i, n) keep[i] = dropout_bits(key, static_cast<uint64_t>(i)) >= threshold ? scale : T(0);
}

}  // namespace
}  // namespace minidl::cuda::copy_kernels
