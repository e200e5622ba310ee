// cuda/norm.cu — batch normalisation on the GPU, fused as on the CPU
// (ops/cpu/norm.cpp): the statistics and the backward's two sums are one block
// per channel, the normalisation one thread per element.
//
// x is viewed as (N, C, L) contiguous, L = H·W; channel c's M = N·L values are
// L-long runs strided by C·L. A block of 256 threads walks them (neighbouring
// threads, neighbouring addresses within a run) and reduces in double.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/norm_kernels.cuh"

namespace minidl::cuda {

using namespace norm_kernels;

namespace {

unsigned channel_blocks(const Dims& d) {
  if (d.C > 0x7fffffff) throw Error("batch_norm: more than 2^31 - 1 channels on CUDA");
  return static_cast<unsigned>(d.C);
}

}  // namespace

void batch_norm_stats(const TensorArg& mean, const TensorArg& var, const TensorArg& x) {
  const Dims d = dims_of(x);
  if (d.C == 0) return;
  dispatch_f32_f64(x.dtype, "batch_norm", [&](auto tag) {
    using T = decltype(tag);
    stats_kernel<T><<<channel_blocks(d), kThreads, 0, stream()>>>(mean.ptr<T>(), var.ptr<T>(), x.ptr<T>(), d);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void batch_norm_apply(const TensorArg& y, const TensorArg& x, const TensorArg& mean, const TensorArg& invstd,
                      const TensorArg& weight, const TensorArg& bias) {
  const Dims d = dims_of(x);
  const int64_t n = d.N * d.C * d.L;
  if (n == 0) return;
  dispatch_f32_f64(x.dtype, "batch_norm", [&](auto tag) {
    using T = decltype(tag);
    apply_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(y.ptr<T>(), x.ptr<T>(), mean.ptr<T>(), invstd.ptr<T>(),
                                                 data_or_null<T>(weight), data_or_null<T>(bias), d);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void batch_norm_backward(const TensorArg& gx, const TensorArg& gw, const TensorArg& gb, const TensorArg& gy,
                         const TensorArg& x, const TensorArg& mean, const TensorArg& invstd, const TensorArg& weight,
                         bool training) {
  const Dims d = dims_of(x);
  if (d.C == 0) return;
  dispatch_f32_f64(x.dtype, "batch_norm backward", [&](auto tag) {
    using T = decltype(tag);
    backward_kernel<T><<<channel_blocks(d), kThreads, 0, stream()>>>(data_or_null<T>(gx), data_or_null<T>(gw), data_or_null<T>(gb),
                                                        gy.ptr<T>(), x.ptr<T>(), mean.ptr<T>(), invstd.ptr<T>(),
                                                        data_or_null<T>(weight), d, training);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace minidl::cuda
