// cuda/common.cuh — what every CUDA kernel file shares: the stream, the launch
// shape of a grid-stride loop, the checks, and (cuda/device.cuh) the device-side
// helpers: a strided tensor's element offset, warp and block reductions.
//
// Kernels run on minidl's stream of the current device, stream() (cuda/runtime.cu):
// one stream per device orders every launch, memset and copy, so nothing needs
// events to be safe, and a CUDA graph can capture it. Every launch is followed by
// MINIDL_CUDA_CHECK(cudaGetLastError()), so a bad launch becomes a minidl::Error
// naming the kernel's file and line.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <mutex>
#include <vector>

#include "core/dtype_dispatch.h"
#include "core/kernel_arg.h"
#include "cuda/check.h"
#include "cuda/device.cuh"

namespace minidl::cuda {

// The stream every kernel of the current device is launched on.
cudaStream_t stream();

inline int current_device() {
  int d = 0;
  MINIDL_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

// One T per device — a stream, a cuBLAS / cuBLASLt / cuSPARSE handle — made by
// create(T&) on first use on the current device and kept for the process. One
// set of slots per instantiation (each caller's `create` is its own lambda).
template <class T, class Create>
T per_device(Create create) {
  static std::mutex mutex;
  static std::vector<T> slots;
  const int device = current_device();
  std::lock_guard<std::mutex> lock(mutex);
  if (slots.size() <= static_cast<size_t>(device)) slots.resize(device + 1, T{});
  if (!slots[device]) create(slots[device]);
  return slots[device];
}

// A GEMM's epilogue as its own pass, for products that cannot fuse it (cuBLAS
// without cuBLASLt's, cuSPARSE): C (M, N), row stride ldc, += bias (one per row
// or per column), then ReLU.
template <class T>
__global__ void epilogue_kernel(T* C, int64_t ldc, int64_t M, int64_t N, const T* bias, bool per_row, bool relu) {
  MINIDL_CUDA_FOR(i, M * N) {
    const int64_t m = i / N, n = i % N;
    T& c = C[m * ldc + n];
    T v = c;
    if (bias) v += bias[per_row ? m : n];
    if (relu) v = v > T(0) ? v : T(0);
    c = v;
  }
}

// A kernel argument's pointer, or null where the tensor is not wanted (null data).
template <class T>
T* data_or_null(const TensorArg& a) {
  return a.data ? a.ptr<T>() : nullptr;
}

// Blocks for a grid-stride loop over n items: enough to fill the device many
// times over, never more than the grid allows.
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  return static_cast<unsigned>(std::clamp<int64_t>((n + threads - 1) / threads, 1, 65535 * 8));
}

}  // namespace minidl::cuda
