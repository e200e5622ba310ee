// cuda/stub.cpp — stands in for cuda/ when minidl is built without CUDA
// (MINIDL_CUDA=OFF, or AUTO without nvcc). Every call that needs a GPU says so.
#include "core/error.h"
#include "core/storage.h"
#include "cuda/runtime.h"

namespace minidl::cuda {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  throw Error(std::string(what) + ": minidl was built without CUDA (configure with -DMINIDL_CUDA=ON and nvcc)");
}
}  // namespace

bool built_with_cuda() { return false; }
int device_count() { return 0; }
bool is_available() { return false; }
std::string unavailable_reason() { return "minidl was built without CUDA"; }
DeviceInfo device_info(int) { no_cuda("device_info"); }
Allocator& allocator(int) { no_cuda("cuda allocator"); }
void memcpy_host_to_device(void*, const void*, size_t, int) { no_cuda("copy to cuda"); }
void memcpy_device_to_host(void*, const void*, size_t, int) { no_cuda("copy from cuda"); }
void memcpy_device_to_device(void*, int, const void*, int, size_t) { no_cuda("copy between cuda devices"); }
void fill(const TensorArg&, double, int) { no_cuda("fill on cuda"); }
void synchronize(int) { no_cuda("cuda synchronize"); }

}  // namespace minidl::cuda
