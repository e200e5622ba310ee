// tests/cuda_emulator.h — just enough of CUDA's execution model to run simple
// kernels on the host: a block's threads are fibers taking turns on
// the calling thread, __shared__ arrays are function statics (one block runs at
// a time, so they are the block's), and __syncthreads() lets the next fiber run
// until every one of the block has arrived.
//
// For the CPU suite to check the indexing of kernels written for the GPU —
// tiles, edges, strides — on machines without one (tests/test_sgemm_emulated.cpp
// runs the hand-written SGEMM's versions this way, tests/test_cuda_emulated.cpp
// the row kernels). Warp shuffles are emulated (each warp exchanges through
// slots between two barriers of its 32 lanes), atomicMin on 64-bit unsigned
// too; nothing about speed. Include it before the kernels' headers, never
// together with cuda_runtime.h; blocks must be whole warps.
//
// Why fibers and not host threads: a barrier of 256 threads on a 2-core machine
// is 256 trips through the operating system's scheduler; with fibers it is 256
// switches of stack in user space (the three emulated test files: 38 s of CPU
// on threads, 20 s on fibers switched by swapcontext, 1 s with the switch
// below, on a 2-core Zen 5 VM). And the threads between
// two barriers run one after another, in order, so a missing barrier is not
// left to chance: it shows when a thread reads what a later one was to write.
// The switch between fibers is a dozen instructions on x86-64 (switch_context
// below); the portable ucontext calls also save the signal mask, a system call
// per switch that took half the emulated tests' time.
#pragma once

#if !(defined(__x86_64__) && defined(__linux__))
#include <ucontext.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

// Under AddressSanitizer every switch between stacks is announced to it, or it
// takes a fiber's frames for overflows of the stack it thinks it is on.
#if defined(__SANITIZE_ADDRESS__)
#define MINIDL_EMULATOR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MINIDL_EMULATOR_ASAN 1
#endif
#endif
#ifdef MINIDL_EMULATOR_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

inline dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace minidl::testing {

// A fiber's saved state, and the switch from one to another.
#if defined(__x86_64__) && defined(__linux__)
// What the System V ABI asks a function to preserve — rbx, rbp, r12–r15 —
// pushed on the running stack, whose pointer is kept in *save; then the other
// stack's pointer loaded and its registers popped; `ret` continues where that
// fiber called the switch. (The MXCSR and x87 control words are preserved too
// by the ABI; no kernel changes them, so they are not switched.) In a COMDAT
// section, like an inline function: each test file that includes this header
// emits it, and the linker keeps one.
extern "C" void minidl_emulator_switch(void** save, void* load);
asm(R"(
    .pushsection .text.minidl_emulator_switch,"axG",@progbits,minidl_emulator_switch,comdat
    .globl minidl_emulator_switch
    .hidden minidl_emulator_switch
    .type minidl_emulator_switch, @function
minidl_emulator_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size minidl_emulator_switch, .-minidl_emulator_switch
    .popsection
)");
struct Context {
  void* sp = nullptr;
};
// A stack that, switched to, starts entry(): as if minidl_emulator_switch had
// been called from entry's first instruction — six registers to pop, entry's
// address to return to, and below that the slot of entry's own return address
// (there is none: a fiber never returns from entry), so that entry starts with
// the stack 8 bytes off a 16-byte boundary, as after a call.
inline void start_context(Context& c, char* stack, size_t bytes, void (*entry)()) {
  auto** sp = reinterpret_cast<void**>(reinterpret_cast<uintptr_t>(stack + bytes) & ~uintptr_t{15});
  *--sp = nullptr;
  *--sp = reinterpret_cast<void*>(entry);
  for (int i = 0; i < 6; ++i) *--sp = nullptr;
  c.sp = sp;
}
inline void switch_context(Context& from, Context& to) { minidl_emulator_switch(&from.sp, to.sp); }
#else
struct Context {
  ucontext_t uc;
};
inline void start_context(Context& c, char* stack, size_t bytes, void (*entry)()) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = bytes;
  c.uc.uc_link = nullptr;  // a fiber never returns from entry(): it switches back
  makecontext(&c.uc, entry, 0);
}
inline void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

// The fibers that play a block's threads. run(n) runs the kernel on fibers
// 0 … n − 1 in turn, each until it returns or waits at a barrier, and goes
// round again until every one has returned. Stacks are made once and kept for
// every launch. A pass in which no fiber moved is a deadlock (a barrier that
// not every thread reaches — on a GPU, a hang), and an exception in a fiber
// stops the block; both are thrown from run().
class Fibers {
 public:
  void run(dim3 block, const std::function<void()>& kernel) {
    const unsigned n = block.x * block.y;
    while (fibers_.size() < n) fibers_.push_back(std::make_unique<Fiber>());
    kernel_ = &kernel;
    failure_ = nullptr;
    unsigned left = n;
    for (unsigned i = 0; i < n; ++i) {
      Fiber& f = *fibers_[i];
      f.done = false;
      f.asan_fake_stack = nullptr;
      start_context(f.context, f.stack.get(), kStackBytes, &Fibers::entry);
    }
    while (left > 0 && !failure_) {
      const uint64_t arrivals_before = arrivals_;
      for (unsigned i = 0; i < n && !failure_; ++i) {
        if (fibers_[i]->done) continue;
        current_ = i;
        threadIdx = {i % block.x, i / block.x, 0};
        switch_to(*fibers_[i]);
        if (fibers_[i]->done) --left;
      }
      if (left > 0 && arrivals_ == arrivals_before && !failure_)
        throw std::runtime_error("emulated kernel: deadlock — threads wait at a barrier that the others never reach");
    }
    kernel_ = nullptr;
    if (failure_) std::rethrow_exception(failure_);
  }

  // A thread reached a barrier: the scheduler's sign of progress (as is a thread finishing).
  void count_arrival() { ++arrivals_; }

  // From a fiber: back to the scheduler, which resumes this fiber on its next pass.
  void yield() {
    Fiber& f = *fibers_[current_];
    leave(f, &f.asan_fake_stack);
  }

 private:
  static constexpr size_t kStackBytes = 256 * 1024;  // kernels' frames at -O0 under ASan fit many times
  struct Fiber {
    Context context;
    std::unique_ptr<char[]> stack{new char[kStackBytes]};
    bool done = false;
    void* asan_fake_stack = nullptr;
  };

  static void entry() {
    Fibers& self = instance();
    Fiber& f = *self.fibers_[self.current_];
    self.resumed(f);
    try {
      (*self.kernel_)();
    } catch (...) {
      self.failure_ = std::current_exception();
    }
    f.done = true;
    ++self.arrivals_;
    self.leave(f, nullptr);  // nullptr: this fiber's stack is finished with
  }

  // The scheduler's side of a switch into a fiber, and the fiber's side of the
  // switch back. The ASan calls say which stack is about to run.
  void switch_to(Fiber& f) {
#ifdef MINIDL_EMULATOR_ASAN
    __sanitizer_start_switch_fiber(&scheduler_fake_stack_, f.stack.get(), kStackBytes);
#endif
    switch_context(scheduler_, f.context);
#ifdef MINIDL_EMULATOR_ASAN
    __sanitizer_finish_switch_fiber(scheduler_fake_stack_, nullptr, nullptr);
#endif
  }
  void leave(Fiber& f, void** fake_stack) {
#ifdef MINIDL_EMULATOR_ASAN
    __sanitizer_start_switch_fiber(fake_stack, scheduler_stack_, scheduler_stack_bytes_);
#else
    (void)fake_stack;
#endif
    switch_context(f.context, scheduler_);
    resumed(f);
  }
  // First thing a fiber does whenever it runs again.
  void resumed(Fiber& f) {
#ifdef MINIDL_EMULATOR_ASAN
    __sanitizer_finish_switch_fiber(f.asan_fake_stack, &scheduler_stack_, &scheduler_stack_bytes_);
#else
    (void)f;
#endif
  }

 public:
  static Fibers& instance() {
    static Fibers fibers;
    return fibers;
  }

 private:
  std::vector<std::unique_ptr<Fiber>> fibers_;
  Context scheduler_;
  const std::function<void()>* kernel_ = nullptr;
  std::exception_ptr failure_;
  unsigned current_ = 0;
  uint64_t arrivals_ = 0;
#ifdef MINIDL_EMULATOR_ASAN  // what ASan needs to hear at each switch
  void* scheduler_fake_stack_ = nullptr;
  const void* scheduler_stack_ = nullptr;
  size_t scheduler_stack_bytes_ = 0;
#endif
};

// A barrier of `count` fibers: the last to arrive opens it, the others let the
// rest run until it is open.
class FiberBarrier {
 public:
  explicit FiberBarrier(unsigned count) : count_(count) {}
  void arrive_and_wait() {
    Fibers& fibers = Fibers::instance();
    const uint64_t phase = phase_;
    fibers.count_arrival();
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++phase_;
      return;
    }
    while (phase_ == phase) fibers.yield();
  }

 private:
  unsigned count_, arrived_ = 0;
  uint64_t phase_ = 0;
};
}  // namespace minidl::testing

inline minidl::testing::FiberBarrier* emulated_block_barrier = nullptr;
inline void __syncthreads() { emulated_block_barrier->arrive_and_wait(); }

// One warp's exchange: 32 slots of 8 bytes and a barrier of its 32 lanes.
struct EmulatedWarp {
  minidl::testing::FiberBarrier bar{32};
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
using std::isfinite;
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

#define MINIDL_CUDA_EMULATOR 1  // cuda/device.cuh checks for it
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

namespace minidl::testing {

// kernel<<<grid, block>>>(...) as emulate(grid, block, [&] { kernel(...); }):
// block after block, each by blockDim.x · blockDim.y fibers.
inline void emulate(dim3 grid, dim3 block, const std::function<void()>& kernel) {
  gridDim = grid;
  blockDim = block;
  const unsigned threads = block.x * block.y;
  FiberBarrier bar(threads);
  emulated_block_barrier = &bar;
  struct Unset {  // also when a launch throws: no pointer to the barrier outlives it
    ~Unset() { emulated_block_barrier = nullptr; }
  } unset;
  emulated_misaligned_accesses = 0;  // a launch that threw may have left a count
  emulated_warps.clear();
  for (unsigned w = 0; w < (threads + 31) / 32; ++w) emulated_warps.push_back(std::make_unique<EmulatedWarp>());
  for (unsigned by = 0; by < grid.y; ++by)
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      blockIdx = {bx, by, 0};
      Fibers::instance().run(block, kernel);
    }
  if (const int64_t bad = emulated_misaligned_accesses.exchange(0))
    throw std::runtime_error("emulated kernel: " + std::to_string(bad) + " vector accesses off their alignment");
}

}  // namespace minidl::testing
