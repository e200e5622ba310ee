// cuda/runtime.h — the CUDA runtime as the rest of minidl sees it.
//
// Plain C++: no CUDA headers, so core/ and the CPU-only build include it freely.
// Implemented by cuda/runtime.cu when minidl is built with CUDA, and by
// cuda/stub.cpp otherwise, whose functions say "built without CUDA" — never a
// silent fallback to the CPU.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "core/caching_allocator.h"
#include "core/kernel_arg.h"

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
  int clock_khz = 0;            // peak SM clock
  int memory_clock_khz = 0, memory_bus_bits = 0;
  int l2_bytes = 0;
  // FP32 multiply-adds per second at the peak clock: 128 FP32 lanes per SM on
  // sm_80+ (Ampere, Hopper), × 2 flops. The figure the SGEMM tables divide by.
  double fp32_peak_flops() const { return 2.0 * 128 * multiprocessors * clock_khz * 1e3; }
};
DeviceInfo device_info(int device);

// The device allocator: a CachingAllocator (core/caching_allocator.h) in front
// of cudaMalloc. Freed blocks go into size-class bins and the next request of
// that class takes one back, so a training step makes no cudaMalloc after its
// first (stats().cache_misses counts the cudaMalloc calls). One stream, the
// default one, runs everything, so a block freed while a kernel still reads it
// is only reused by work queued after that kernel: no event bookkeeping needed.
// When cudaMalloc fails the cache is emptied and the request tried once more.
Allocator& allocator(int device);
AllocatorStats allocator_stats(int device);
void empty_cache(int device);  // every cached block back to cudaFree
// Tests: every block handed out is first filled with 0xFF bytes (NaN in f32,
// f64 and bf16; −1 in the integers), so an element a kernel forgot to write fails.
void set_poison(bool on);

// Scratch device memory for the length of a call (a GEMM operand made
// contiguous, a conv's column buffer), from the caching allocator.
class Scratch {
 public:
  Scratch(size_t nbytes, int device);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* data() const { return data_; }

 private:
  // ([[maybe_unused]]: a build without CUDA, cuda/stub.cpp, never uses them)
  void* data_ = nullptr;
  [[maybe_unused]] size_t nbytes_ = 0;
  [[maybe_unused]] int device_ = 0;
};

void memcpy_host_to_device(void* dst, const void* src, size_t nbytes, int device);
void memcpy_device_to_host(void* dst, const void* src, size_t nbytes, int device);
void memcpy_device_to_device(void* dst, int dst_device, const void* src, int src_device, size_t nbytes);

// Kernels. fill: every element of `dst` (any strides) := value.
void fill(const TensorArg& dst, double value, int device);
void synchronize(int device);

// Benchmark timing: seconds `fn` took on the device, measured with a CUDA event
// recorded before and after it on the stream (then waited for). What the host
// spends queuing launches overlaps the GPU's work, as in real use.
double time_with_events(const std::function<void()>& fn);
// Evicts the L2 cache (writes a buffer twice its size) for cold figures.
void flush_l2(int device);

// A CUDA graph: the kernels `fn` launches on the current device's stream,
// captured once and replayed with one launch. Host work in `fn` (the autograd
// bookkeeping, the choice of kernels, scalar arguments such as a learning rate
// or Adam's step count) happens once, at capture: a replay repeats the same
// kernels on the same buffers with the same arguments. Memory that `fn` frees
// while it is captured stays reserved for the graph (the replays write there)
// and goes back to the cache when the Graph is destroyed. A host read inside
// `fn` (item(), a copy to the CPU) cannot be captured and is an error; the
// index checks that read one integer back are skipped while capturing
// (capturing() is true), so run `fn` once uncaptured first.
class Graph {
 public:
  explicit Graph(const std::function<void()>& fn);
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  void replay();
  int64_t nodes() const;  // kernels, copies and memsets captured

 private:  // ([[maybe_unused]]: a build without CUDA, cuda/stub.cpp, never uses them)
  [[maybe_unused]] void* graph_ = nullptr;  // cudaGraph_t
  [[maybe_unused]] void* exec_ = nullptr;   // cudaGraphExec_t
  [[maybe_unused]] void* pool_ = nullptr;   // the blocks the replays write to (cuda/runtime.cu)
  [[maybe_unused]] int device_ = 0;
};
bool capturing();

}  // namespace minidl::cuda
