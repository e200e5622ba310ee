// cuda/bf16_kernels.cuh — a bf16 Linear layer on the GPU: the kernels of
// cuda/gemm.cu's linear_bf16.
//
//   y (M, N) = act( x (M, K) · Wᵀ + bias ),  x and W bf16, the sums in f32,
//                                            y bf16 (rounded once) or f32
//
// the layer the CPU computes in ops/cpu/gemm_bf16.cpp. bf16 × bf16 is exact in
// f32 (8 + 8 significant bits fit in 24), so the only roundings are the f32
// sums' — the order of the k terms differs from the CPU's kernels, so the
// results agree to rounding, not bit for bit — and the one to bf16 at the end.
//
// Two ways, as for f32 (cuda/gemm.cu picks):
//   cuBLAS            cublasGemmEx with bf16 operands and f32 sums on the
//                     tensor cores, into an f32 buffer; then epilogue_kernel
//                     adds the bias, clamps and rounds (two launches: cuBLASLt
//                     could fuse them, at the price of a third API to read).
//   bf16_linear_kernel the same tiled GEMM as the int8 layer's
//                     (cuda/qgemm_kernels.cuh) with f32 products instead of
//                     byte dot products, and the epilogue fused. It is here
//                     to be read and checked (tests/test_cuda_emulated.cpp runs
//                     it on the host against the CPU's layer), and for builds
//                     without cuBLAS; it uses no tensor cores, so cuBLAS beats it.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "cuda/device.cuh"

namespace minidl::cuda::bf16_kernels {
namespace {

inline constexpr int kBTile = 64;  // a block's output tile is 64 × 64
inline constexpr int kBStep = 16;  // the tile's k step: 16 bf16 values of each row
inline constexpr int kBSide = 16;  // blockDim = (16, 16); each thread owns 4 × 4 outputs
static_assert(kBTile == 4 * kBSide && kBStep * kBTile == 4 * kBSide * kBSide);  // 4 values per thread per operand

// One output: the bias, the ReLU, then the single rounding (to bf16 when y_bf16).
__device__ inline void store_output(float sum, int64_t m, int64_t n, const float* bias, bool relu, float* y,
                                    bf16* y_bf16, int64_t ldy) {
  float v = sum + (bias ? bias[n] : 0.0f);
  if (relu && v < 0.0f) v = 0.0f;  // a NaN stays NaN, as in the CPU's std::max(v, 0)
  if (y_bf16)
    y_bf16[m * ldy + n] = bf16::from_float(v);
  else
    y[m * ldy + n] = v;
}

// y (M, N) row stride ldy (one of y and y_bf16) := act(x · Wᵀ + bias), x (M, K)
// and w (N, K) bf16, contiguous rows. grid = (⌈N / 64⌉, ⌈M / 64⌉), block = (16, 16).
//
// Each step of 16 values of k the block's 256 threads stage the 64 rows of x and
// of w it needs, 4 values each, widened to f32 (exactly) as they are stored, k
// major: xs[c][r] is row r's value c, so the inner loop reads a row of xs and a
// row of ws. Then each thread takes a 4 × 4 sub-tile — rows ty + 16i, columns
// tx + 16j — and does 16 multiply-adds per output from shared memory: the 16
// threads of a half-warp read 16 consecutive ws columns (16 banks) and one xs
// value (a broadcast). Tails (M, N past the tile, k past the row) stage zeros.
__global__ void __launch_bounds__(kBSide* kBSide)
    bf16_linear_kernel(const bf16* x, const bf16* w, int64_t M, int64_t N, int64_t K, const float* bias, bool relu,
                       float* y, bf16* y_bf16, int64_t ldy) {
  __shared__ float xs[kBStep][kBTile];
  __shared__ float ws[kBStep][kBTile];
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y), t = ty * kBSide + tx;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kBTile, n0 = static_cast<int64_t>(blockIdx.x) * kBTile;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < K; k0 += kBStep) {
    for (int i = 0; i < 4; ++i) {
      // Value c of row r: 16 consecutive threads read one row's 16 values (32 bytes).
      const int r = t / kBStep + kBSide * i, c = t % kBStep;
      const int64_t k = k0 + c;
      xs[c][r] = m0 + r < M && k < K ? static_cast<float>(x[(m0 + r) * K + k]) : 0.0f;
      ws[c][r] = n0 + r < N && k < K ? static_cast<float>(w[(n0 + r) * K + k]) : 0.0f;
    }
    __syncthreads();
    for (int c = 0; c < kBStep; ++c) {
      float a[4], b[4];
      for (int i = 0; i < 4; ++i) a[i] = xs[c][ty + kBSide * i], b[i] = ws[c][tx + kBSide * i];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      const int64_t m = m0 + ty + kBSide * i, n = n0 + tx + kBSide * j;
      if (m < M && n < N) store_output(acc[i][j], m, n, bias, relu, y, y_bf16, ldy);
    }
}

// After cuBLAS: sums (M, N) f32, row stride N, into y / y_bf16 (row stride ldy)
// through store_output. In place when y is sums.
__global__ void epilogue_kernel(const float* sums, int64_t M, int64_t N, const float* bias, bool relu, float* y,
                                bf16* y_bf16, int64_t ldy) {
  MINIDL_CUDA_FOR(i, M * N) store_output(sums[i], i / N, i % N, bias, relu, y, y_bf16, ldy);
}

}  // namespace
}  // namespace minidl::cuda::bf16_kernels
