// cuda/elementwise_kernels.cuh — the kernels of cuda/elementwise.cu: unary, binary and where, with the op code as an argument.
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

namespace minidl::cuda::elementwise_kernels {
namespace {

template <class C>
__device__ C gelu_grad(C x) {
  const C cdf = C(0.5) * (C(1) + erf(x * C(0.70710678118654752)));
  const C pdf = exp(C(-0.5) * x * x) * C(0.39894228040143268);
  return cdf + x * pdf;
}

template <class C>
__device__ C unary_value(UnaryOp op, C v, C a, C b) {
  switch (op) {
    case UnaryOp::neg: return -v;
    case UnaryOp::abs: return v < C(0) ? C(-v) : v;
    case UnaryOp::sign: return C((C(0) < v) - (v < C(0)));
    case UnaryOp::relu: return v > C(0) ? v : C(0);
    case UnaryOp::clamp: return v < a ? a : (v > b ? b : v);
    default: break;
  }
  if constexpr (std::is_floating_point_v<C>) {
    switch (op) {
      case UnaryOp::exp: return exp(v);
      case UnaryOp::log: return log(v);
      case UnaryOp::sqrt: return sqrt(v);
      case UnaryOp::leaky_relu: return v > C(0) ? v : v * a;
      case UnaryOp::sigmoid: return v >= C(0) ? C(1) / (C(1) + exp(-v)) : exp(v) / (C(1) + exp(v));
      case UnaryOp::tanh: return tanh(v);
      case UnaryOp::gelu: return C(0.5) * v * (C(1) + erf(v * C(0.70710678118654752)));
      case UnaryOp::pow_scalar: return pow(v, a);
      default: break;
    }
  }
  return v;  // not reached: the host checked the op against the dtype
}

template <class C>
__device__ C binary_value(BinaryOp op, C x, C y) {
  switch (op) {
    case BinaryOp::add: return x + y;
    case BinaryOp::sub: return x - y;
    case BinaryOp::mul: return x * y;
    case BinaryOp::maximum: return x < y ? y : x;
    case BinaryOp::minimum: return y < x ? y : x;
    case BinaryOp::relu_backward: return y > C(0) ? x : C(0);
    case BinaryOp::eq: return x == y;
    case BinaryOp::ne: return x != y;
    case BinaryOp::lt: return x < y;
    case BinaryOp::le: return x <= y;
    case BinaryOp::gt: return x > y;
    case BinaryOp::ge: return x >= y;
    case BinaryOp::logical_and: return x != C(0) && y != C(0);
    case BinaryOp::logical_or: return x != C(0) || y != C(0);
    default: break;
  }
  if constexpr (std::is_floating_point_v<C>) {
    switch (op) {
      case BinaryOp::div: return x / y;
      case BinaryOp::pow: return pow(x, y);
      case BinaryOp::xlogy: return x == C(0) ? C(0) : x * log(y);
      case BinaryOp::gelu_backward: return x * gelu_grad(y);
      default: break;
    }
  }
  return x;  // not reached
}

template <class T>
__global__ void unary_kernel(UnaryOp op, TensorArg out, TensorArg x, bool x_flat, double a, double b, int64_t n) {
  using C = compute_t<T>;
  T* o = out.ptr<T>();
  const T* in = x.ptr<T>();
  MINIDL_CUDA_FOR(i, n) {
    const C v = static_cast<C>(in[x_flat ? i : offset_of(x, i)]);
    o[i] = T(unary_value<C>(op, v, static_cast<C>(a), static_cast<C>(b)));
  }
}

template <class T>
__global__ void logical_not_kernel(TensorArg out, TensorArg x, bool x_flat, int64_t n) {
  bool* o = out.ptr<bool>();
  const T* in = x.ptr<T>();
  MINIDL_CUDA_FOR(i, n) o[i] = static_cast<compute_t<T>>(in[x_flat ? i : offset_of(x, i)]) == compute_t<T>(0);
}

// R is T, or bool for comparisons. out may be strided too (an in-place op on a view).
template <class T, class R>
__global__ void binary_kernel(BinaryOp op, TensorArg out, TensorArg x, TensorArg y, bool flat, int64_t n) {
  using C = compute_t<T>;
  R* o = out.ptr<R>();
  const T* px = x.ptr<T>();
  const T* py = y.ptr<T>();
  MINIDL_CUDA_FOR(i, n) {
    const int64_t oo = flat ? i : offset_of(out, i), ox = flat ? i : offset_of(x, i), oy = flat ? i : offset_of(y, i);
    o[oo] = R(binary_value<C>(op, static_cast<C>(px[ox]), static_cast<C>(py[oy])));
  }
}

template <class T>
__global__ void where_kernel(TensorArg out, TensorArg cond, TensorArg x, TensorArg y, int64_t n) {
  T* o = out.ptr<T>();
  const bool* c = cond.ptr<bool>();
  const T* px = x.ptr<T>();
  const T* py = y.ptr<T>();
  MINIDL_CUDA_FOR(i, n) {
    o[offset_of(out, i)] = c[offset_of(cond, i)] ? px[offset_of(x, i)] : py[offset_of(y, i)];
  }
}

}  // namespace
}  // namespace minidl::cuda::elementwise_kernels
