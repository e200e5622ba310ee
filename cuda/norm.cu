// cuda/norm.cu — batch normalisation on the GPU, fused as on the CPU
// (ops/cpu/norm.cpp): the statistics and the backward's two sums are one block
// per channel, the normalisation one thread per element.
//
// x is viewed as (N, C, L) contiguous, L = H·W; channel c's M = N·L values are
// L-long runs strided by C·L. A block of 256 threads walks them (neighbouring
// threads, neighbouring addresses within a run) and reduces in double.
//
// Few channels of many values (32 channels of 128·28·28 in resnet-s's first
// stage: 32 blocks for a GPU of 132 multiprocessors) are split: several blocks
// per channel, each summarising its part, then a small kernel per channel
// combines the parts — and, in the backward, a third computes dx one thread per
// element. The kernels: cuda/norm_kernels.cuh.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/norm_kernels.cuh"
#include "cuda/runtime.h"

namespace minidl::cuda {

using namespace norm_kernels;

namespace {

// How many blocks share each channel (reduce::split_count; 1: a block each).
int64_t parts_of(const Dims& d) {
  if (d.C > 0x7fffffff) throw Error("batch_norm: more than 2^31 - 1 channels on CUDA");
  return reduce::split_count(d.C, d.N * d.L);
}

}  // namespace

void batch_norm_stats(const TensorArg& mean, const TensorArg& var, const TensorArg& x) {
  const Dims d = dims_of(x);
  if (d.C == 0) return;
  const int64_t parts = parts_of(d);
  dispatch_f32_f64(x.dtype, "batch_norm", [&](auto tag) {
    using T = decltype(tag);
    if (parts == 1) {
      stats_kernel<T><<<static_cast<unsigned>(d.C), kThreads, 0, stream()>>>(mean.ptr<T>(), var.ptr<T>(), x.ptr<T>(),
                                                                              d, 1, nullptr);
      return;
    }
    Scratch scratch(static_cast<size_t>(d.C * parts) * sizeof(reduce::Partial), current_device());
    auto* partials = static_cast<reduce::Partial*>(scratch.data());
    stats_kernel<T><<<static_cast<unsigned>(d.C * parts), kThreads, 0, stream()>>>(mean.ptr<T>(), var.ptr<T>(),
                                                                                    x.ptr<T>(), d, parts, partials);
    MINIDL_CUDA_CHECK(cudaGetLastError());
    stats_combine_kernel<T><<<static_cast<unsigned>(d.C), row_threads(parts), 0, stream()>>>(
        mean.ptr<T>(), var.ptr<T>(), parts, partials);
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
  const int64_t parts = parts_of(d);
  dispatch_f32_f64(x.dtype, "batch_norm backward", [&](auto tag) {
    using T = decltype(tag);
    T *dx = data_or_null<T>(gx), *dw = data_or_null<T>(gw), *db = data_or_null<T>(gb);
    const T* w = data_or_null<T>(weight);
    if (parts == 1) {
      backward_kernel<T><<<static_cast<unsigned>(d.C), kThreads, 0, stream()>>>(
          dx, dw, db, gy.ptr<T>(), x.ptr<T>(), mean.ptr<T>(), invstd.ptr<T>(), w, d, training, 1, nullptr);
      return;
    }
    Scratch scratch(static_cast<size_t>(d.C * parts) * sizeof(reduce::Partial), current_device());
    auto* partials = static_cast<reduce::Partial*>(scratch.data());
    backward_kernel<T><<<static_cast<unsigned>(d.C * parts), kThreads, 0, stream()>>>(
        dx, dw, db, gy.ptr<T>(), x.ptr<T>(), mean.ptr<T>(), invstd.ptr<T>(), w, d, training, parts, partials);
    MINIDL_CUDA_CHECK(cudaGetLastError());
    backward_combine_kernel<T><<<static_cast<unsigned>(d.C), row_threads(parts), 0, stream()>>>(dw, db, parts,
                                                                                                 partials);
    if (!dx) return;
    MINIDL_CUDA_CHECK(cudaGetLastError());
    backward_input_kernel<T><<<blocks_for(d.N * d.C * d.L), kThreads, 0, stream()>>>(
        dx, gy.ptr<T>(), x.ptr<T>(), mean.ptr<T>(), invstd.ptr<T>(), w, d, training, parts, partials);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace minidl::cuda
