// cuda/runtime.h — the CUDA runtime as the rest of minidl sees it.
//
// Plain C++: no CUDA headers, so core/ and the CPU-only build include it freely.
// Implemented by cuda/runtime.cu when minidl is built with CUDA, and by
// cuda/stub.cpp otherwise, whose functions say "built without CUDA" — never a
// silent fallback to the CPU.
#pragma once

#include <cstddef>
#include <string>

#include "core/kernel_arg.h"

namespace minidl {
class Allocator;
}

namespace minidl::cuda {

// True when this build contains the CUDA backend (MINIDL_CUDA=ON, or AUTO with nvcc).
bool built_with_cuda();
// Number of usable devices; 0 when there is none, no driver, or no CUDA build.
int device_count();
bool is_available();
// Why is_available() is false, in words ("no CUDA device: CUDA driver version is
// insufficient for CUDA runtime version"); empty when a device is available.
std::string unavailable_reason();

struct DeviceInfo {
  std::string name;
  int major = 0, minor = 0;     // compute capability
  int multiprocessors = 0;
  size_t total_memory = 0;      // bytes
};
DeviceInfo device_info(int device);

// The device allocator (plain cudaMalloc/cudaFree for now; a caching allocator
// replaces it in the CUDA backend issue without touching callers).
Allocator& allocator(int device);

void memcpy_host_to_device(void* dst, const void* src, size_t nbytes, int device);
void memcpy_device_to_host(void* dst, const void* src, size_t nbytes, int device);
void memcpy_device_to_device(void* dst, int dst_device, const void* src, int src_device, size_t nbytes);

// Kernels. fill: every element of `dst` (any strides) := value.
void fill(const TensorArg& dst, double value, int device);
void synchronize(int device);

}  // namespace minidl::cuda
