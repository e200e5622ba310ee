// cuda/check.h — MINIDL_CUDA_CHECK: every CUDA call and launch is checked and a
// failure becomes a minidl::Error naming the call, the CUDA error and the place.
//
//   kernel<<<grid, block>>>(...); MINIDL_CUDA_CHECK(cudaGetLastError());
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "core/error.h"

#define MINIDL_CUDA_CHECK(expr)                                                                        \
  do {                                                                                                 \
    cudaError_t minidl_err_ = (expr);                                                                  \
    if (minidl_err_ != cudaSuccess)                                                                    \
      throw ::minidl::Error(std::string("CUDA error: ") + cudaGetErrorString(minidl_err_) + " in " #expr \
                            " at " __FILE__ ":" + std::to_string(__LINE__));                           \
  } while (0)
