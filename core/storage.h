// core/storage.h — Allocator and Storage: bytes on a device, nothing more.
//
// A Storage owns one allocation from its device's allocator and frees it when the
// last Tensor sharing it goes away (Tensors hold it by std::shared_ptr). It knows
// nothing about shapes or dtypes: that is the Tensor's job.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/device.h"

namespace minidl {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
};

// The CPU allocator hands out 64-byte-aligned blocks (one cache line, one AVX-512
// vector) and keeps freed large blocks for reuse (core/caching_allocator.h).
inline constexpr size_t kCpuAlignment = 64;
Allocator& cpu_allocator();
// The allocator of `device`; for CUDA this asks cuda/runtime (an error if unavailable).
Allocator& allocator_for(Device device);

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

  // Bumped by every in-place write (fill_, copy_, optimizer steps), so backward
  // can tell that a tensor it saved was changed after the forward (PyTorch's
  // version counter). Views share their base's storage, so they share its count.
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  uint64_t version_ = 0;
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
};

// Copies raw bytes between any two devices (host<->device through cuda/runtime).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes);

}  // namespace minidl
