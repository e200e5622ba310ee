// cuda/copy.cu — copy (strided, broadcasting, converting) and fill on the GPU.
//
// Bandwidth-bound: one thread per element in a grid-stride loop. Each thread
// turns its linear (row-major) index into an offset through each tensor's
// strides, so views — a column, a transposed block, a broadcast row with
// stride 0 — read and write correctly. Two contiguous tensors of one dtype are
// a plain cudaMemcpyAsync instead.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/copy_kernels.cuh"
#include "cuda/runtime.h"

namespace minidl::cuda {

using namespace copy_kernels;

void copy(const TensorArg& dst, const TensorArg& src) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  if (dst.dtype == src.dtype && dst.is_contiguous() && src.is_contiguous() && src.numel() == n) {
    MINIDL_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, n * element_size(dst.dtype), cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  dispatch_all(dst.dtype, "copy", [&](auto dtag) {
    dispatch_all(src.dtype, "copy", [&](auto stag) {
      copy_kernel<decltype(dtag), decltype(stag)><<<blocks_for(n), kThreads, 0, stream()>>>(dst, src, n);
    });
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void fill(const TensorArg& dst, double value, int device) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  MINIDL_CUDA_CHECK(cudaSetDevice(device));
  dispatch_all(dst.dtype, "fill", [&](auto tag) {
    using T = decltype(tag);
    fill_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(dst, T(static_cast<compute_t<T>>(value)), n);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace minidl::cuda
