// cuda/index.cu — index_select / index_add, gather / scatter_add, and the range
// check the op layer runs before any of them.
//
// Memory-bound gathers, one thread per element written. The adds (the
// backwards of the selects) can meet the same destination twice when an index
// repeats, so they use atomicAdd: correct, but the order of the additions —
// and so the last bits of a float sum — can differ from run to run (f32 and
// f64 only; the CPU adds in order).
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/index_kernels.cuh"

namespace minidl::cuda {

using namespace index_kernels;

namespace {

template <class F>
void dispatch_atomic(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    default: throw Error(std::string(op) + ": dtype " + std::string(dtype_name(t)) + " is not supported on CUDA (f32, f64)");
  }
}

}  // namespace

void find_out_of_range(const TensorArg& status, const TensorArg& index, int64_t size, int64_t allowed) {
  MINIDL_CUDA_CHECK(cudaMemsetAsync(status.data, 0xFF, sizeof(int64_t), stream()));
  const int64_t n = index.numel();
  if (n == 0) return;
  out_of_range_kernel<<<blocks_for(n), kThreads, 0, stream()>>>(status.ptr<unsigned long long>(), index.ptr<int64_t>(), n, size,
                                                   allowed);
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void index_select(const TensorArg& out, const TensorArg& x, const TensorArg& index) {
  const int64_t size = x.shape[1], inner = x.shape[2], n = index.shape[0], total = out.numel();
  if (total == 0) return;
  dispatch_all(x.dtype, "index_select", [&](auto tag) {
    using T = decltype(tag);
    index_select_kernel<T><<<blocks_for(total), kThreads, 0, stream()>>>(out.ptr<T>(), x.ptr<T>(), index.ptr<int64_t>(), size, n,
                                                            inner, total);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void index_add(const TensorArg& out, const TensorArg& index, const TensorArg& src) {
  const int64_t size = out.shape[1], inner = out.shape[2], n = index.shape[0], total = src.numel();
  if (total == 0) return;
  dispatch_atomic(out.dtype, "index_add", [&](auto tag) {
    using T = decltype(tag);
    index_add_kernel<T><<<blocks_for(total), kThreads, 0, stream()>>>(out.ptr<T>(), src.ptr<T>(), index.ptr<int64_t>(), size, n,
                                                         inner, total);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void gather(const TensorArg& out, const TensorArg& x, const TensorArg& index, int dim) {
  const int64_t n = index.numel();
  if (n == 0) return;
  dispatch_all(x.dtype, "gather", [&](auto tag) {
    gather_kernel<decltype(tag)><<<blocks_for(n), kThreads, 0, stream()>>>(out, x, index, dim, n);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void scatter_add(const TensorArg& out, const TensorArg& index, const TensorArg& src, int dim) {
  const int64_t n = index.numel();
  if (n == 0) return;
  dispatch_atomic(out.dtype, "scatter_add", [&](auto tag) {
    scatter_add_kernel<decltype(tag)><<<blocks_for(n), kThreads, 0, stream()>>>(out, index, src, dim, n);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace minidl::cuda
