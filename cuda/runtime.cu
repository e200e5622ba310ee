// cuda/runtime.cu — device query, the caching device allocator, and host<->device copies.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/storage.h"
#include "cuda/check.h"
#include "cuda/common.cuh"
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

// cudaMalloc and cudaFree, behind the caching allocator.
class DeviceMemory final : public Allocator {
 public:
  explicit DeviceMemory(int device) : device_(device) {}
  void* allocate(size_t nbytes) override {
    MINIDL_CUDA_CHECK(cudaSetDevice(device_));
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, nbytes);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();  // an out-of-memory must not resurface at the next launch check
      throw Error("cudaMalloc of " + std::to_string(nbytes) + " bytes on cuda:" + std::to_string(device_) +
                  " failed: " + cudaGetErrorString(err));
    }
    return p;
  }
  void deallocate(void* ptr, size_t) override {
    cudaSetDevice(device_);
    cudaFree(ptr);  // never throws: it runs from destructors
  }

 private:
  int device_;
};

std::atomic<bool> poison{false};

// The memory of one CUDA graph: its replays write to the addresses it captured,
// so no block it allocated may go to anyone else while it lives, nor may a block
// freed while it was being captured (its kernels may still read it).
struct GraphPool {
  std::vector<std::pair<void*, size_t>> reserved;  // freed, kept for the graph
};

// What Storage sees for cuda:N: the cache in front of cudaMalloc, the graphs'
// private blocks, and the tests' poison.
class DeviceAllocator final : public Allocator {
 public:
  explicit DeviceAllocator(int device)
      : device_(device), memory_(device), cache_(memory_, /*min_cached=*/1, /*cache_limit=*/SIZE_MAX) {}
  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    MINIDL_CUDA_CHECK(cudaSetDevice(device_));
    void* p = nullptr;
    try {
      p = cache_.allocate(nbytes);  // on a failed cudaMalloc it empties itself and tries once more
    } catch (const Error& e) {
      const AllocatorStats s = cache_.stats();
      throw Error(std::string(e.what()) + " (" + std::to_string(s.bytes_in_use >> 20) +
                  " MiB held by live tensors; the cache was emptied and the request retried)");
    }
    {
      std::lock_guard<std::mutex> lock(graph_mutex_);
      if (capturing_) owner_[p] = capturing_;
    }
    if (poison.load()) MINIDL_CUDA_CHECK(cudaMemsetAsync(p, 0xFF, nbytes, stream()));
    return p;
  }
  void deallocate(void* ptr, size_t nbytes) override {
    if (!ptr) return;
    {
      std::lock_guard<std::mutex> lock(graph_mutex_);
      const auto it = owner_.find(ptr);
      GraphPool* pool = it != owner_.end() ? it->second : capturing_;
      if (pool) {
        pool->reserved.emplace_back(ptr, nbytes);
        return;
      }
    }
    cache_.deallocate(ptr, nbytes);
  }
  CachingAllocator& cache() { return cache_; }

  void begin_capture(GraphPool* pool) {
    std::lock_guard<std::mutex> lock(graph_mutex_);
    capturing_ = pool;
  }
  void end_capture() {
    std::lock_guard<std::mutex> lock(graph_mutex_);
    capturing_ = nullptr;
  }
  // The graph is gone: its freed blocks go back to the cache, and the ones
  // still held by tensors become ordinary blocks.
  void release(GraphPool* pool) {
    std::vector<std::pair<void*, size_t>> blocks;
    {
      std::lock_guard<std::mutex> lock(graph_mutex_);
      blocks.swap(pool->reserved);
      for (auto it = owner_.begin(); it != owner_.end();) it = it->second == pool ? owner_.erase(it) : std::next(it);
    }
    for (const auto& [ptr, nbytes] : blocks) cache_.deallocate(ptr, nbytes);
  }

 private:
  int device_;
  DeviceMemory memory_;
  CachingAllocator cache_;
  std::mutex graph_mutex_;
  GraphPool* capturing_ = nullptr;
  std::unordered_map<void*, GraphPool*> owner_;  // blocks allocated during a capture
};

DeviceAllocator& device_allocator(int device) {
  check_device(device);
  static std::mutex mutex;
  static std::vector<std::unique_ptr<DeviceAllocator>> allocators;
  std::lock_guard<std::mutex> lock(mutex);
  if (allocators.empty())
    for (int d = 0; d < device_count(); ++d) allocators.push_back(std::make_unique<DeviceAllocator>(d));
  return *allocators[device];
}

}  // namespace

bool built_with_cuda() { return true; }
int device_count() { return probe().count; }
bool is_available() { return probe().count > 0; }
std::string unavailable_reason() { return probe().reason; }

DeviceInfo device_info(int device) {
  check_device(device);
  cudaDeviceProp prop{};
  MINIDL_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  DeviceInfo info{prop.name, prop.major, prop.minor, prop.multiProcessorCount, prop.totalGlobalMem};
  MINIDL_CUDA_CHECK(cudaDeviceGetAttribute(&info.clock_khz, cudaDevAttrClockRate, device));
  MINIDL_CUDA_CHECK(cudaDeviceGetAttribute(&info.memory_clock_khz, cudaDevAttrMemoryClockRate, device));
  MINIDL_CUDA_CHECK(cudaDeviceGetAttribute(&info.memory_bus_bits, cudaDevAttrGlobalMemoryBusWidth, device));
  MINIDL_CUDA_CHECK(cudaDeviceGetAttribute(&info.l2_bytes, cudaDevAttrL2CacheSize, device));
  return info;
}

Allocator& allocator(int device) { return device_allocator(device); }
AllocatorStats allocator_stats(int device) { return device_allocator(device).cache().stats(); }
void empty_cache(int device) { device_allocator(device).cache().empty_cache(); }
void set_poison(bool on) { poison.store(on); }

Scratch::Scratch(size_t nbytes, int device)
    : data_(allocator(device).allocate(nbytes)), nbytes_(nbytes), device_(device) {}
// Freed blocks are reused only by work queued after this point on the same
// stream, so the kernels that read the scratch finish before anyone reuses it.
Scratch::~Scratch() { allocator(device_).deallocate(data_, nbytes_); }

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

cudaStream_t stream() {
  // One blocking stream per device (created on first use, kept for the process):
  // it orders every launch, and unlike the legacy default stream it can be
  // captured into a graph. Being a blocking stream, it still synchronises with
  // the plain cudaMemcpy calls of the host<->device copies.
  return per_device<cudaStream_t>([](cudaStream_t& s) { MINIDL_CUDA_CHECK(cudaStreamCreate(&s)); });
}

namespace {
thread_local bool capturing_now = false;
}  // namespace

bool capturing() { return capturing_now; }

Graph::Graph(const std::function<void()>& fn) {
  device_ = current_device();
  DeviceAllocator& alloc = device_allocator(device_);
  auto* pool = new GraphPool;
  pool_ = pool;
  cudaStream_t s = stream();
  alloc.begin_capture(pool);
  capturing_now = true;
  cudaGraph_t graph = nullptr;
  try {
    MINIDL_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    try {
      fn();
    } catch (const std::exception& e) {
      cudaStreamEndCapture(s, &graph);  // ends the (now invalid) capture
      (void)cudaGetLastError();
      if (graph) cudaGraphDestroy(graph);
      throw Error(std::string("cuda graph: the captured call failed (a host read, such as item() or a copy to "
                              "the CPU, cannot be captured): ") +
                  e.what());
    }
    const cudaError_t err = cudaStreamEndCapture(s, &graph);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      throw Error(std::string("cuda graph: the capture failed (") + cudaGetErrorString(err) +
                  "): the captured call did something a graph cannot hold, such as a host read or a copy to the CPU");
    }
  } catch (...) {
    capturing_now = false;
    alloc.end_capture();
    alloc.release(pool);
    delete pool;
    throw;
  }
  capturing_now = false;
  alloc.end_capture();
  graph_ = graph;
  cudaGraphExec_t exec = nullptr;
  MINIDL_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  exec_ = exec;
}

Graph::~Graph() {
  if (exec_) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (graph_) cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
  cudaStreamSynchronize(stream());  // no replay may still be writing to the pool's blocks
  auto* pool = static_cast<GraphPool*>(pool_);
  device_allocator(device_).release(pool);
  delete pool;
}

void Graph::replay() { MINIDL_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), stream())); }
int64_t Graph::nodes() const {
  size_t n = 0;
  MINIDL_CUDA_CHECK(cudaGraphGetNodes(static_cast<cudaGraph_t>(graph_), nullptr, &n));
  return static_cast<int64_t>(n);
}

double time_with_events(const std::function<void()>& fn) {
  cudaEvent_t start, stop;
  MINIDL_CUDA_CHECK(cudaEventCreate(&start));
  MINIDL_CUDA_CHECK(cudaEventCreate(&stop));
  float ms = 0;
  try {
    MINIDL_CUDA_CHECK(cudaEventRecord(start, stream()));
    fn();
    MINIDL_CUDA_CHECK(cudaEventRecord(stop, stream()));
    MINIDL_CUDA_CHECK(cudaEventSynchronize(stop));
    MINIDL_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  } catch (...) {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    throw;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms * 1e-3;
}

void flush_l2(int device) {
  const size_t bytes = 2 * static_cast<size_t>(std::max(device_info(device).l2_bytes, 1 << 20));
  Scratch buffer(bytes, device);
  MINIDL_CUDA_CHECK(cudaMemsetAsync(buffer.data(), 0, bytes, stream()));
}

}  // namespace minidl::cuda
