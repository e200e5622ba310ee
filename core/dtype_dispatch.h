// core/dtype_dispatch.h — the dtype switch inside each kernel file, CPU (ops/cpu/) and CUDA (cuda/).
//
//   dispatch_floating(x.dtype, "exp", [&](auto tag) { using T = decltype(tag); ... });
//
// Each helper instantiates the body for the dtypes its op supports; any other
// dtype throws, naming the op and the dtype.
#pragma once

#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace minidl {

[[noreturn]] inline void unsupported_dtype(const char* op, DType t) {
  throw Error(std::string(op) + ": dtype " + std::string(dtype_name(t)) + " is not supported");
}

template <class F>
void dispatch_floating(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    case DType::bf16: f(bf16{}); return;
    default: unsupported_dtype(op, t);
  }
}

// f32 and f64 only: kernels with long accumulations (GEMM, conv, pooling).
template <class F>
void dispatch_f32_f64(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    default: unsupported_dtype(op, t);
  }
}

// f32 and bf16: parameters a model trains (optimizer updates).
template <class F>
void dispatch_f32_bf16(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::bf16: f(bf16{}); return;
    default: unsupported_dtype(op, t);
  }
}

// Every numeric dtype except bool.
template <class F>
void dispatch_numeric(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    case DType::bf16: f(bf16{}); return;
    case DType::int8: f(int8_t{}); return;
    case DType::int32: f(int32_t{}); return;
    case DType::int64: f(int64_t{}); return;
    default: unsupported_dtype(op, t);
  }
}

template <class F>
void dispatch_all(DType t, const char* op, F&& f) {
  if (t == DType::boolean) {
    f(bool{});
    return;
  }
  dispatch_numeric(t, op, std::forward<F>(f));
}

}  // namespace minidl
