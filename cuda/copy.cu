// cuda/copy.cu — copy (strided, broadcasting, converting), fill and dropout's mask on the GPU.
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

void dropout_mask(const TensorArg& keep, double p, uint64_t key) {
  const int64_t n = keep.numel();
  if (n == 0) return;
  if (capturing())
    throw Error("dropout: cannot be captured in a cuda graph — every replay would reuse the mask drawn at capture");
  dispatch_floating(keep.dtype, "dropout", [&](auto tag) {
    using T = decltype(tag);
    dropout_mask_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(
        keep.ptr<T>(), n, key, dropout_keep_threshold(p), T(static_cast<compute_t<T>>(1 / (1 - p))));
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace minidl::cuda
