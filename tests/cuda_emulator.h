// tests/cuda_emulator.h — just enough of CUDA's execution model to run simple
// kernels on the host: a block's threads are host threads, __shared__ arrays are
// function statics (one block runs at a time, so they are the block's), and
// __syncthreads() is a std::barrier across the block.
//
// For the CPU suite to check the indexing of kernels written for the GPU —
// tiles, edges, strides — on machines without one (tests/test_sgemm_emulated.cpp
// runs the hand-written SGEMM's versions this way, tests/test_cuda_emulated.cpp
// the row kernels). Warp shuffles are emulated (each warp exchanges through
// slots between two barriers of its 32 lanes), atomicMin on 64-bit unsigned
// too; nothing about speed. Include it before the kernels' headers, never
// together with cuda_runtime.h; blocks must be whole warps.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* emulated_block_barrier = nullptr;
inline void __syncthreads() { emulated_block_barrier->arrive_and_wait(); }

// One warp's exchange: 32 slots of 8 bytes and a barrier of its 32 lanes.
struct EmulatedWarp {
  std::barrier<> bar{32};
  uint64_t slot[32] = {};
};
inline std::vector<std::unique_ptr<EmulatedWarp>> emulated_warps;

// v from lane (lane ^ mask) of this thread's warp; every lane must call it.
template <class T>
T __shfl_xor_sync(unsigned, T v, int lane_mask) {
  static_assert(sizeof(T) <= 8);
  const unsigned linear = threadIdx.y * blockDim.x + threadIdx.x;  // warps are cut from the linear thread id
  EmulatedWarp& w = *emulated_warps[linear / 32];
  const unsigned lane = linear % 32;
  std::memcpy(&w.slot[lane], &v, sizeof(T));
  w.bar.arrive_and_wait();
  T out;
  std::memcpy(&out, &w.slot[lane ^ static_cast<unsigned>(lane_mask)], sizeof(T));
  w.bar.arrive_and_wait();  // nobody overwrites a slot before every lane has read
  return out;
}

// A GPU faults on a vector load or store whose address is not a multiple of its
// size; the host copies that stand in for them would not. Kernels report each
// such access here (load16 / store16 in cuda/softmax_kernels.cuh), and
// emulate() throws after a launch that made any.
inline std::atomic<int64_t> emulated_misaligned_accesses{0};
inline void emulated_vector_access(const void* p, size_t bytes) {
  if (reinterpret_cast<uintptr_t>(p) % bytes != 0) ++emulated_misaligned_accesses;
}

inline unsigned long long atomicMin(unsigned long long* address, unsigned long long v) {
  std::atomic_ref<unsigned long long> a(*address);
  unsigned long long old = a.load();
  while (v < old && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}

template <class T>
T atomicAdd(T* address, T v) {
  std::atomic_ref<T> a(*address);
  T old = a.load();
  while (!a.compare_exchange_weak(old, old + v)) {
  }
  return old;
}

// The device math the kernels call unqualified (CUDA declares these for device code).
using std::erf;
using std::exp;
using std::fmax;
using std::isinf;
using std::isnan;
using std::log;
using std::pow;
using std::sqrt;
using std::tanh;
inline float max(float a, float b) { return std::max(a, b); }
inline double max(double a, double b) { return std::max(a, b); }
inline long max(long a, long b) { return std::max(a, b); }
inline long min(long a, long b) { return std::min(a, b); }
inline float min(float a, float b) { return std::min(a, b); }
inline double min(double a, double b) { return std::min(a, b); }

#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

namespace minidl::testing {

// The host threads that play a block's threads, made once and kept for every
// launch: starting 256 threads per launch cost more than the kernels (≈ 45 ms a
// launch on a 2-core VM, ≈ 125 ms under ASan). run(n, body) runs body(0) …
// body(n − 1) on n threads at once — a block's threads must all be alive
// together, for its barriers — and returns when every one has finished.
class ThreadPool {
 public:
  ~ThreadPool() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    start_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  void run(unsigned n, const std::function<void(unsigned)>& body) {
    std::unique_lock lock(mutex_);
    while (threads_.size() < n) {
      const unsigned id = static_cast<unsigned>(threads_.size());
      threads_.emplace_back([this, id] { work(id); });
    }
    body_ = &body;
    active_ = n;
    running_ = n;
    ++generation_;
    start_.notify_all();
    done_.wait(lock, [&] { return running_ == 0; });
    body_ = nullptr;
  }

 private:
  void work(unsigned id) {
    uint64_t seen = 0;
    for (;;) {
      std::unique_lock lock(mutex_);
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (id >= active_) continue;  // not needed for this launch
      const std::function<void(unsigned)>& body = *body_;
      lock.unlock();
      body(id);
      lock.lock();
      if (--running_ == 0) done_.notify_one();
    }
  }

  std::mutex mutex_;
  std::condition_variable start_, done_;
  std::vector<std::thread> threads_;
  const std::function<void(unsigned)>* body_ = nullptr;
  uint64_t generation_ = 0;
  unsigned active_ = 0, running_ = 0;
  bool stop_ = false;
};

inline ThreadPool& emulator_threads() {
  static ThreadPool pool;
  return pool;
}

// kernel<<<grid, block>>>(...) as emulate(grid, block, [&] { kernel(...); }):
// block after block, each by blockDim.x · blockDim.y host threads.
inline void emulate(dim3 grid, dim3 block, const std::function<void()>& kernel) {
  gridDim = grid;
  blockDim = block;
  const unsigned threads = block.x * block.y;
  std::barrier<> bar(threads);
  emulated_block_barrier = &bar;
  emulated_warps.clear();
  for (unsigned w = 0; w < (threads + 31) / 32; ++w) emulated_warps.push_back(std::make_unique<EmulatedWarp>());
  emulator_threads().run(threads, [&](unsigned t) {
    threadIdx = {t % block.x, t / block.x, 0};
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = {bx, by, 0};
        kernel();
        bar.arrive_and_wait();  // the block is done before its shared arrays serve the next one
      }
  });
  emulated_block_barrier = nullptr;
  if (const int64_t bad = emulated_misaligned_accesses.exchange(0))
    throw std::runtime_error("emulated kernel: " + std::to_string(bad) + " vector accesses off their alignment");
}

}  // namespace minidl::testing
