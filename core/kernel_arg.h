// core/kernel_arg.h — TensorArg: what a kernel sees of a tensor.
//
// Kernels (CPU and CUDA) never see minidl::Tensor. They get this plain struct —
// a data pointer already advanced to the tensor's first element, the dtype, and
// up to kMaxDims sizes and strides (in elements) — so cuda/*.cu need no core
// headers beyond this one and core/dtype.h.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace minidl {

inline constexpr int kMaxDims = 8;

struct TensorArg {
  void* data = nullptr;
  DType dtype = DType::f32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};

  MINIDL_HOST_DEVICE int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  MINIDL_HOST_DEVICE bool is_contiguous() const {
    int64_t expected = 1;
    for (int i = ndim - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != expected) return false;
      expected *= shape[i];
    }
    return true;
  }
  template <class T> MINIDL_HOST_DEVICE T* ptr() const { return static_cast<T*>(data); }
};

}  // namespace minidl
