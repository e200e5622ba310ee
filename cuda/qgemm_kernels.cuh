// cuda/qgemm_kernels.cuh — int8 dynamic quantization on the GPU: the kernels
// of cuda/qgemm.cu.
//
//   y (M, N) f32 = act( sx·sw[n] · (Σ_k xq[m,k]·wq[n,k] − zx·Σ_k wq[n,k]) + bias[n] )
//
// the layer the CPU computes in ops/cpu/qgemm.cpp, with the same formulas
// (ops/quant_math.h) and an exact integer sum, so a GPU int8 layer returns the
// CPU's bits. Three launches, and the host waits for none of them:
//
//   1. range_kernel     each block finds the minimum and maximum of its share
//                       of x (and whether it met a NaN or ±inf): one partial
//                       per block, kRangeBlocks at most.
//   2. quantize_kernel  every block folds the partials into (sx, zx) — a few
//                       hundred numbers, cheaper to read again in each block
//                       than to launch a kernel for — and block 0 stores them
//                       for the GEMM's epilogue. Then each thread writes one
//                       group of 4 quantized bytes.
//   3. qgemm_kernel     the integer GEMM and the epilogue.
//
// Signed bytes: the GPU's 4-byte dot product, dp4a (sm_61 on), multiplies
// signed by signed or unsigned by unsigned, not unsigned activations by signed
// weights as the CPU's vpdpbusd does. So the activations are stored as xq − 128
// (in [−128, 127]) and the zero point is moved to match: Σ (xq − 128)·wq
// − (zx − 128)·Σ wq = Σ xq·wq − zx·Σ wq, the same integer.
//
// A NaN or ±inf in x has no int8 range. The CPU throws; here the host does not
// look (that would wait for the GPU in every layer), so the scale becomes NaN
// and every output of the call is NaN — what an f32 layer would give too.
//
// Layouts: the weight is (N, Kp) int8 row-major, K padded with zeros to Kp, a
// multiple of 4 (ops/quant.cpp packs it), and xq (M, Kp) the same; each row is
// read as Kp / 4 int32 words, 4 bytes per dot product.
//
// Kept apart from the launcher so the CPU suite runs them through
// tests/cuda_emulator.h against the CPU's int8 layer (tests/test_cuda_emulated.cpp).
#pragma once

#include <cstdint>

#include "cuda/device.cuh"
#include "ops/quant_math.h"

namespace minidl::cuda::qgemm_kernels {
namespace {

inline constexpr int kRangeBlocks = 128;  // partial ranges; quantize_kernel folds them with one block of kThreads
inline constexpr int kQTile = 64;         // qgemm_kernel: a block's output tile is 64 × 64
inline constexpr int kQWords = 16;        // the tile's k step: 16 words = 64 bytes of each row
inline constexpr int kQSide = 16;         // blockDim = (16, 16); each thread owns 4 × 4 outputs
static_assert(kQTile == 4 * kQSide && kQWords * kQTile == 4 * kQSide * kQSide);  // 4 words per thread per operand

// c + the dot product of a's and b's four signed bytes.
__device__ inline int32_t dot4(int32_t a, int32_t b, int32_t c) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 610
  return __dp4a(a, b, c);
#else  // an older GPU, and the host emulator
  for (int i = 0; i < 4; ++i) c += static_cast<int8_t>((a >> (8 * i)) & 0xff) * static_cast<int8_t>((b >> (8 * i)) & 0xff);
  return c;
#endif
}

// 1. lo[b], hi[b]: the range of block b's elements of x (n contiguous floats),
// starting from 0; bad[b]: 1 if one of them is NaN or ±inf.
__global__ void range_kernel(const float* x, int64_t n, float* lo, float* hi, int32_t* bad) {
  __shared__ float scratch[32];
  __shared__ int32_t count[32];
  float l = 0.0f, h = 0.0f;
  int32_t b = 0;
  MINIDL_CUDA_FOR(i, n) {
    const float v = x[i];
    if (v - v == 0.0f) {  // finite: NaN and ±inf give NaN
      l = min(l, v), h = max(h, v);
    } else {
      b = 1;
    }
  }
  l = -block_max(-l, scratch);  // min as −max(−x): one reduction to write
  h = block_max(h, scratch);
  b = block_sum(b, count);
  if (threadIdx.x == 0) lo[blockIdx.x] = l, hi[blockIdx.x] = h, bad[blockIdx.x] = b;
}

// 2. The range of all of x from the `partials` partials, its (sx, zx) into
// *params (block 0), and xq (M, words · 4) as signed bytes xq − 128, written a
// word (4 bytes, 4 values of k) per thread; the padding past K holds zx − 128,
// which meets zero weights. x is (M, K), row stride ldx. blockDim.x = kThreads.
__global__ void quantize_kernel(const float* x, int64_t M, int64_t K, int64_t ldx, int64_t words, const float* lo,
                                const float* hi, const int32_t* bad, int partials, QuantParams* params,
                                int32_t* xq) {
  __shared__ float scratch[32];
  __shared__ int32_t count[32];
  const int t = static_cast<int>(threadIdx.x);
  const float l = -block_max(t < partials ? -lo[t] : 0.0f, scratch);  // 0 is in every range already
  const float h = block_max(t < partials ? hi[t] : 0.0f, scratch);
  const bool finite = block_sum(t < partials ? bad[t] : 0, count) == 0;
  QuantParams q = quant_params_from_range(l, h);
  if (!finite) q.scale = NAN, q.zero_point = 0;
  if (blockIdx.x == 0 && t == 0) *params = q;
  const float inv = 1.0f / q.scale;
  MINIDL_CUDA_FOR(i, M * words) {
    const int64_t m = i / words, k0 = (i % words) * 4;
    uint32_t word = 0;
    for (int j = 0; j < 4; ++j) {
      const int64_t k = k0 + j;
      const int32_t v = !finite ? 0 : (k < K ? quantize_u8(x[m * ldx + k], inv, q.zero_point) : q.zero_point) - 128;
      word |= (static_cast<uint32_t>(v) & 0xffu) << (8 * j);
    }
    xq[i] = static_cast<int32_t>(word);
  }
}

// 3. y (M, N), row stride ldy := the int8 layer, from xq (M, words) and w (N,
// words) as int32 words of 4 signed bytes, with the weight rows' sums, scales,
// the bias (or null) and the ReLU. grid = (⌈N / 64⌉, ⌈M / 64⌉), block = (16, 16).
//
// The classic shared-memory tiling (as cuda/sgemm_kernels.cuh's version 2-3):
// each step of 16 words the block's 256 threads stage the 64 rows of x and of w
// it needs (4 words each, coalesced along the rows), then each thread takes a
// 4 × 4 sub-tile — rows ty + 16i, columns tx + 16j — and does 16 dot products of
// 4 bytes per output from shared memory. The rows are padded to 17 words so the
// 16 rows of w a warp reads fall in 16 different banks; the x rows a warp reads
// are two, broadcast. Tails (M, N past the tile, words past the row) load zeros.
// Not done here: double buffering, wider loads, int8 tensor cores (IMMA, through
// cuBLASLt) — what a production int8 GEMM adds.
__global__ void __launch_bounds__(kQSide* kQSide)
    qgemm_kernel(const int32_t* xq, const int32_t* w, int64_t M, int64_t N, int64_t words, const int32_t* w_row_sums,
                 const float* w_scale, const float* bias, bool relu, const QuantParams* params, float* y, int64_t ldy) {
  __shared__ int32_t xs[kQTile][kQWords + 1];
  __shared__ int32_t ws[kQTile][kQWords + 1];
  const int tx = static_cast<int>(threadIdx.x), ty = static_cast<int>(threadIdx.y), t = ty * kQSide + tx;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kQTile, n0 = static_cast<int64_t>(blockIdx.x) * kQTile;
  int32_t acc[4][4] = {};
  for (int64_t g0 = 0; g0 < words; g0 += kQWords) {
    for (int i = 0; i < 4; ++i) {
      const int r = t / kQWords + kQSide * i, c = t % kQWords;
      const int64_t g = g0 + c;
      xs[r][c] = m0 + r < M && g < words ? xq[(m0 + r) * words + g] : 0;
      ws[r][c] = n0 + r < N && g < words ? w[(n0 + r) * words + g] : 0;
    }
    __syncthreads();
    for (int c = 0; c < kQWords; ++c) {
      int32_t a[4], b[4];
      for (int i = 0; i < 4; ++i) a[i] = xs[ty + kQSide * i][c], b[i] = ws[tx + kQSide * i][c];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = dot4(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  const QuantParams q = *params;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) {
      const int64_t m = m0 + ty + kQSide * i, n = n0 + tx + kQSide * j;
      if (m < M && n < N)
        y[m * ldy + n] = int8_output(acc[i][j] - (q.zero_point - 128) * w_row_sums[n], q.scale, w_scale[n],
                                     bias ? bias[n] : 0.0f, relu);
    }
}

}  // namespace
}  // namespace minidl::cuda::qgemm_kernels
