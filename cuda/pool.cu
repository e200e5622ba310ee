// cuda/pool.cu — max, average and adaptive-average 2-D pooling on the GPU.
//
// Forward: one thread per output cell, scanning its window. Backward: gx is
// zeroed, then one thread per output cell adds its gradient into the input
// cells that produced it — with atomicAdd, because overlapping windows (stride
// below the kernel) can send two outputs' gradients to one input cell.
// f32 and f64 (bf16 pools through f32 in the op layer, as on the CPU).
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/pool_kernels.cuh"

namespace minidl::cuda {

using namespace pool_kernels;

namespace {

void zero(const TensorArg& t) {
  MINIDL_CUDA_CHECK(cudaMemsetAsync(t.data, 0, t.numel() * element_size(t.dtype), stream()));
}

template <bool kAdaptive>
void avg_forward(const char* op, const TensorArg& y, const TensorArg& x, const Pool2dParams& p) {
  const Planes s = planes_of(x, y);
  const int64_t n = s.planes * s.Ho * s.Wo;
  if (n == 0) return;
  dispatch_f32_f64(x.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    avg_pool_kernel<T, kAdaptive><<<blocks_for(n), kThreads, 0, stream()>>>(y.ptr<T>(), x.ptr<T>(), s, p);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

template <bool kAdaptive>
void avg_backward(const char* op, const TensorArg& gx, const TensorArg& gy, const Pool2dParams& p) {
  const Planes s = planes_of(gx, gy);
  zero(gx);
  const int64_t n = s.planes * s.Ho * s.Wo;
  if (n == 0) return;
  dispatch_f32_f64(gx.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    avg_pool_backward_kernel<T, kAdaptive><<<blocks_for(n), kThreads, 0, stream()>>>(gx.ptr<T>(), gy.ptr<T>(), s, p);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void max_pool2d_forward(const TensorArg& y, int32_t* argmax, const TensorArg& x, const Pool2dParams& p) {
  const Planes s = planes_of(x, y);
  const int64_t n = s.planes * s.Ho * s.Wo;
  if (n == 0) return;
  dispatch_f32_f64(x.dtype, "max_pool2d", [&](auto tag) {
    using T = decltype(tag);
    max_pool_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(y.ptr<T>(), argmax, x.ptr<T>(), s, p);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void max_pool2d_backward(const TensorArg& gx, const TensorArg& gy, const int32_t* argmax) {
  const Planes s = planes_of(gx, gy);
  zero(gx);
  const int64_t n = s.planes * s.Ho * s.Wo;
  if (n == 0) return;
  dispatch_f32_f64(gx.dtype, "max_pool2d backward", [&](auto tag) {
    using T = decltype(tag);
    max_pool_backward_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(gx.ptr<T>(), gy.ptr<T>(), argmax, s);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void avg_pool2d_forward(const TensorArg& y, const TensorArg& x, const Pool2dParams& p) {
  avg_forward<false>("avg_pool2d", y, x, p);
}
void avg_pool2d_backward(const TensorArg& gx, const TensorArg& gy, const Pool2dParams& p) {
  avg_backward<false>("avg_pool2d backward", gx, gy, p);
}
void adaptive_avg_pool2d_forward(const TensorArg& y, const TensorArg& x) {
  avg_forward<true>("adaptive_avg_pool2d", y, x, {});
}
void adaptive_avg_pool2d_backward(const TensorArg& gx, const TensorArg& gy) {
  avg_backward<true>("adaptive_avg_pool2d backward", gx, gy, {});
}

}  // namespace minidl::cuda
