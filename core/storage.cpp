#include "core/storage.h"

#include <cstring>

#include "core/caching_allocator.h"
#include "core/check.h"
#include "cuda/runtime.h"

namespace minidl {

Allocator& cpu_allocator() { return cpu_caching_allocator(); }

Allocator& allocator_for(Device device) {
  if (device.is_cpu()) return cpu_allocator();
  return cuda::allocator(device.index);
}

Storage::Storage(size_t nbytes, Device device)
    : nbytes_(nbytes), device_(device), allocator_(&allocator_for(device)) {
  data_ = allocator_->allocate(nbytes);
}

Storage::~Storage() {
  if (data_) allocator_->deallocate(data_, nbytes_);
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (nbytes == 0) return;
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, nbytes);
  } else if (dst_device.is_cuda() && src_device.is_cpu()) {
    cuda::memcpy_host_to_device(dst, src, nbytes, dst_device.index);
  } else if (dst_device.is_cpu() && src_device.is_cuda()) {
    cuda::memcpy_device_to_host(dst, src, nbytes, src_device.index);
  } else {
    cuda::memcpy_device_to_device(dst, dst_device.index, src, src_device.index, nbytes);
  }
}

}  // namespace minidl
