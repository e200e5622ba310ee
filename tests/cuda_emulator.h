// tests/cuda_emulator.h — just enough of CUDA's execution model to run simple
// kernels on the host: a block's threads are host threads, __shared__ arrays are
// function statics (one block runs at a time, so they are the block's), and
// __syncthreads() is a std::barrier across the block.
//
// For the CPU suite to check the indexing of kernels written for the GPU —
// tiles, edges, strides — on machines without one (tests/test_sgemm_emulated.cpp
// runs the hand-written SGEMM's versions this way). Not for warp-level
// intrinsics (shuffles, votes) or atomics, and nothing about speed. Include it
// before the kernels' header, never together with cuda_runtime.h.
#pragma once

#include <barrier>
#include <cmath>
#include <cstdint>
#include <functional>
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

#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(n)

namespace minidl::testing {

// kernel<<<grid, block>>>(...) as emulate(grid, block, [&] { kernel(...); }):
// block after block, each by blockDim.x · blockDim.y host threads.
inline void emulate(dim3 grid, dim3 block, const std::function<void()>& kernel) {
  gridDim = grid;
  blockDim = block;
  const unsigned threads = block.x * block.y;
  std::barrier<> bar(threads);
  emulated_block_barrier = &bar;
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      threadIdx = {t % block.x, t / block.x, 0};
      for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx) {
          blockIdx = {bx, by, 0};
          kernel();
          bar.arrive_and_wait();  // the block is done before its shared arrays serve the next one
        }
    });
  for (std::thread& th : pool) th.join();
  emulated_block_barrier = nullptr;
}

}  // namespace minidl::testing
