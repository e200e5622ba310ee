// cuda/elementwise.cu — unary, binary and where on the GPU.
//
// One grid-stride kernel per family and dtype; the op code is a kernel argument
// and the switch on it runs inside the loop. Every thread of the grid takes the
// same branch, so the switch costs a few instructions per element of a kernel
// that waits on memory anyway — and keeps the build to one instantiation per
// dtype instead of one per (op, dtype). Values are computed in compute_t<T>
// (f32 for bf16), as on the CPU (ops/cpu/elementwise.cpp).
//
// Broadcasting needs nothing here: the op layer hands x and y already expanded
// to out's shape, a broadcast dimension having stride 0, and offset_of() walks
// those strides. A contiguous operand skips the walk (`flat`).
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/elementwise_kernels.cuh"

namespace minidl::cuda {

using namespace elementwise_kernels;

namespace {

// The ops an integer dtype has (the rest need a floating point type).
bool integer_unary(UnaryOp op) {
  return op == UnaryOp::neg || op == UnaryOp::abs || op == UnaryOp::sign || op == UnaryOp::relu || op == UnaryOp::clamp;
}
bool integer_binary(BinaryOp op) {
  return !(op == BinaryOp::div || op == BinaryOp::pow || op == BinaryOp::xlogy || op == BinaryOp::gelu_backward);
}

}  // namespace

void unary(UnaryOp op, const TensorArg& out, const TensorArg& x, double a, double b) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const bool x_flat = x.is_contiguous();
  if (op == UnaryOp::logical_not) {
    dispatch_all(x.dtype, "logical_not", [&](auto tag) {
      logical_not_kernel<decltype(tag)><<<blocks_for(n), kThreads, 0, stream()>>>(out, x, x_flat, n);
    });
  } else {
    dispatch_numeric(x.dtype, "unary op", [&](auto tag) {
      using T = decltype(tag);
      if constexpr (!std::is_floating_point_v<compute_t<T>>)
        if (!integer_unary(op)) unsupported_dtype("unary op", x.dtype);
      unary_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(op, out, x, x_flat, a, b, n);
    });
  }
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void binary(BinaryOp op, const TensorArg& out, const TensorArg& x, const TensorArg& y) {
  const int64_t n = out.numel();
  if (n == 0) return;
  const bool flat = out.is_contiguous() && x.is_contiguous() && y.is_contiguous();
  auto launch = [&](auto tag, const TensorArg& xs, const TensorArg& ys) {
    using T = decltype(tag);
    if constexpr (!std::is_floating_point_v<compute_t<T>>)
      if (!integer_binary(op)) unsupported_dtype("binary op", x.dtype);
    if (writes_bool(op))
      binary_kernel<T, bool><<<blocks_for(n), kThreads, 0, stream()>>>(op, out, xs, ys, flat, n);
    else
      binary_kernel<T, T><<<blocks_for(n), kThreads, 0, stream()>>>(op, out, xs, ys, flat, n);
  };
  dispatch_all(x.dtype, "binary op", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      // bool operands: comparisons and logic only, on their 0/1 bytes.
      if (!writes_bool(op)) unsupported_dtype("arithmetic", DType::boolean);
      TensorArg xi = x, yi = y;
      xi.dtype = yi.dtype = DType::int8;
      launch(int8_t{}, xi, yi);
    } else {
      launch(T{}, x, y);
    }
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void where(const TensorArg& out, const TensorArg& cond, const TensorArg& x, const TensorArg& y) {
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_all(out.dtype, "where", [&](auto tag) {
    where_kernel<decltype(tag)><<<blocks_for(n), kThreads, 0, stream()>>>(out, cond, x, y, n);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace minidl::cuda
