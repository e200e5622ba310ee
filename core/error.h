// core/error.h — minidl::Error, the one exception type every failed check throws.
//
// Kept free of fmt and of CUDA so that every layer, CUDA kernels included, can
// throw it. The formatting check macro MINIDL_CHECK lives in core/check.h.
#pragma once

#include <stdexcept>
#include <string>

namespace minidl {

// A user-facing error: the message names the op and what was wrong
// ("matmul: cannot multiply [32, 784] by [512, 256]: ...").
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace minidl
