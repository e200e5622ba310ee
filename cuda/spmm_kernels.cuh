// cuda/spmm_kernels.cuh — the hand-written CSR sparse layer of cuda/spmm.cu.
//
// Y (N, out) = X (N, in) · Wᵀ + bias, then ReLU, for a pruned weight W (out, in)
// in CSR: a Linear layer's product with the zeros skipped, X and Y row-major as
// the layer holds them (no transposes).
//
// One warp per row o of W and tile of up to TILE samples. The warp's 32 lanes
// take the row's non-zeros 32 at a time — lane l the l-th — so W's values and
// column indices are read once per tile and coalesced, and each lane gathers
// x[n, col] for its non-zero from every sample of the tile: the gathers hit
// rows of X (a few KiB each), which the tile's warps share through L1 and L2.
// Each lane ends with TILE partial sums; warp_sum adds each across the warp and
// lane 0 writes y[n, o] with the bias and ReLU. Rows of different lengths
// (unstructured pruning leaves them ragged) only cost the lanes of their own
// warp. At batch 1 TILE is 1: the sparse matrix-vector product.
//
// What it does not do, and cuSPARSE (the comparator beside it) may: balance
// ragged rows across warps, stage X in shared memory, or vectorise the gathers.
// Kept apart from the launcher so the CPU suite runs it through
// tests/cuda_emulator.h against cpu::spmm (tests/test_cuda_emulated.cpp).
#pragma once

#include <cstdint>

#include "cuda/device.cuh"

namespace minidl::cuda::spmm_kernels {
namespace {

inline constexpr int kSpmmWarpsPerBlock = 8;  // blockDim = (32, 8): eight rows of W per block
inline constexpr int kSpmmBatchTile = 8;      // samples per warp when N > 1

template <int TILE>
__global__ void __launch_bounds__(kWarp* kSpmmWarpsPerBlock)
    csr_linear_kernel(const int32_t* row_ptr, const int32_t* col, const float* val, int64_t out, const float* x,
                      int64_t ldx, float* y, int64_t ldy, int64_t N, const float* bias, bool relu) {
  const int lane = static_cast<int>(threadIdx.x);
  const int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * TILE;
  const bool active = o < out;  // every lane stays to the end: warp_sum needs all 32
  const int64_t begin = active ? row_ptr[o] : 0, end = active ? row_ptr[o + 1] : 0;
  float acc[TILE];
#pragma unroll
  for (int t = 0; t < TILE; ++t) acc[t] = 0.0f;
  for (int64_t j = begin + lane; j < end; j += kWarp) {
    const float v = val[j];
    const int64_t c = col[j];
#pragma unroll
    for (int t = 0; t < TILE; ++t)
      if (n0 + t < N) acc[t] += v * x[(n0 + t) * ldx + c];
  }
#pragma unroll
  for (int t = 0; t < TILE; ++t) {
    const float s = warp_sum(acc[t]);
    if (lane == 0 && active && n0 + t < N) {
      const float r = s + (bias ? bias[o] : 0.0f);
      y[(n0 + t) * ldy + o] = relu ? max(r, 0.0f) : r;
    }
  }
}

}  // namespace
}  // namespace minidl::cuda::spmm_kernels
