// cuda/runtime.cu — device query, the device allocator, and host<->device copies.
#include <memory>
#include <mutex>
#include <vector>

#include "core/storage.h"
#include "cuda/check.h"
#include "cuda/runtime.h"

namespace minidl::cuda {

namespace {

// Asked once: without a driver cudaGetDeviceCount returns an error (e.g. "CUDA
// driver version is insufficient for CUDA runtime version") rather than 0 devices;
// any error means "no usable device", and the reason is kept for messages.
struct Probe {
  int count = 0;
  std::string reason;
};

const Probe& probe() {
  static const Probe result = [] {
    Probe p;
    cudaError_t err = cudaGetDeviceCount(&p.count);
    if (err != cudaSuccess) {
      p.count = 0;
      p.reason = std::string("no CUDA device: ") + cudaGetErrorString(err);
      (void)cudaGetLastError();  // clear the sticky error
    } else if (p.count == 0) {
      p.reason = "no CUDA device: the driver reports 0 devices";
    }
    return p;
  }();
  return result;
}

void check_device(int device) {
  const Probe& p = probe();
  if (p.count == 0) throw Error(p.reason);
  if (device < 0 || device >= p.count)
    throw Error("cuda:" + std::to_string(device) + " does not exist (" + std::to_string(p.count) + " device(s))");
}

// Plain cudaMalloc/cudaFree. A caching allocator replaces this in the CUDA backend
// issue; callers only ever see the Allocator interface.
class DeviceAllocator final : public Allocator {
 public:
  explicit DeviceAllocator(int device) : device_(device) {}
  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    MINIDL_CUDA_CHECK(cudaSetDevice(device_));
    void* p = nullptr;
    MINIDL_CUDA_CHECK(cudaMalloc(&p, nbytes));
    return p;
  }
  void deallocate(void* ptr, size_t) override {
    cudaSetDevice(device_);
    cudaFree(ptr);  // never throws from a destructor path
  }

 private:
  int device_;
};

}  // namespace

bool built_with_cuda() { return true; }
int device_count() { return probe().count; }
bool is_available() { return probe().count > 0; }
std::string unavailable_reason() { return probe().reason; }

DeviceInfo device_info(int device) {
  check_device(device);
  cudaDeviceProp prop{};
  MINIDL_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return {prop.name, prop.major, prop.minor, prop.multiProcessorCount, prop.totalGlobalMem};
}

Allocator& allocator(int device) {
  check_device(device);
  static std::mutex mutex;
  static std::vector<std::unique_ptr<DeviceAllocator>> allocators;
  std::lock_guard<std::mutex> lock(mutex);
  if (allocators.empty())
    for (int d = 0; d < device_count(); ++d) allocators.push_back(std::make_unique<DeviceAllocator>(d));
  return *allocators[device];
}

void memcpy_host_to_device(void* dst, const void* src, size_t nbytes, int device) {
  check_device(device);
  MINIDL_CUDA_CHECK(cudaSetDevice(device));
  MINIDL_CUDA_CHECK(cudaMemcpy(dst, src, nbytes, cudaMemcpyHostToDevice));
}

void memcpy_device_to_host(void* dst, const void* src, size_t nbytes, int device) {
  check_device(device);
  MINIDL_CUDA_CHECK(cudaSetDevice(device));
  MINIDL_CUDA_CHECK(cudaMemcpy(dst, src, nbytes, cudaMemcpyDeviceToHost));
}

void memcpy_device_to_device(void* dst, int dst_device, const void* src, int src_device, size_t nbytes) {
  check_device(dst_device);
  check_device(src_device);
  MINIDL_CUDA_CHECK(cudaMemcpyPeer(dst, dst_device, src, src_device, nbytes));
}

void synchronize(int device) {
  check_device(device);
  MINIDL_CUDA_CHECK(cudaSetDevice(device));
  MINIDL_CUDA_CHECK(cudaDeviceSynchronize());
}

}  // namespace minidl::cuda
