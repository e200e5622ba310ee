// cuda/sgemm_kernels.cuh — the hand-written SGEMM's kernels, versions 1 to 5
// (the story of each is in cuda/sgemm.cu's header and docs/cuda.md).
//
// Kept apart from their launcher so that two programs compile them: nvcc, for
// the GPU (cuda/sgemm.cu), and the host compiler through tests/cuda_emulator.h,
// which runs each block's threads as host threads — the CPU suite checks every
// version's indexing at awkward shapes on machines without a GPU
// (tests/test_sgemm_emulated.cpp).
#pragma once

#include <cstdint>

// dim3, float4, fmaxf: from cuda_runtime.h under nvcc, from tests/cuda_emulator.h on the host.

// Inside an unnamed namespace: the two translation units that include this
// header (cuda/sgemm.cu, and the emulated test in the CPU suite) each get their
// own copy, so a build with CUDA that links both does not see them twice.
namespace minidl::cuda::sgemm {
namespace {

// What every version sees: A and B by (row stride, column stride), so a
// transposed operand costs nothing but less regular loads; C row stride ldc.
struct Gemm {
  int64_t M, N, K;
  const float* A;
  int64_t a_rs, a_cs;
  const float* B;
  int64_t b_rs, b_cs;
  float* C;
  int64_t ldc;
  float alpha, beta;
  const float* bias;  // null, or one per column (a linear layer) or per row
  bool bias_per_row, relu;
};

// Out-of-range reads give 0, so a tile hanging over the edge multiplies zeros.
__device__ inline float a_at(const Gemm& g, int64_t m, int64_t k) {
  return m < g.M && k < g.K ? g.A[m * g.a_rs + k * g.a_cs] : 0.0f;
}
__device__ inline float b_at(const Gemm& g, int64_t k, int64_t n) {
  return k < g.K && n < g.N ? g.B[k * g.b_rs + n * g.b_cs] : 0.0f;
}

// The epilogue, shared by every version: scale, accumulate into C, bias, ReLU.
__device__ inline void store(const Gemm& g, int64_t m, int64_t n, float acc) {
  if (m >= g.M || n >= g.N) return;
  float* c = g.C + m * g.ldc + n;
  float v = g.alpha * acc;
  if (g.beta != 0.0f) v += g.beta * *c;  // beta = 0 never reads C (it may be uninitialised)
  if (g.bias) v += g.bias[g.bias_per_row ? m : n];
  if (g.relu) v = fmaxf(v, 0.0f);
  *c = v;
}

// ---- v1: naive. Thread (y, x) of a 16×16 block computes C[m][n] alone, reading
// a row of A and a column of B from global memory: 2 loads per multiply-add.
// The 16 threads along x share one A row (the cache serves it) and read
// neighbouring B columns (coalesced), but nothing is reused on purpose: at 4096³
// this is memory-bound at a few percent of cuBLAS.
__global__ void sgemm_v1_naive(Gemm g) {
  const int64_t n = blockIdx.x * 16 + threadIdx.x, m = blockIdx.y * 16 + threadIdx.y;
  if (m >= g.M || n >= g.N) return;
  float acc = 0.0f;
  for (int64_t k = 0; k < g.K; ++k) acc += a_at(g, m, k) * b_at(g, k, n);
  store(g, m, n, acc);
}

// ---- v2: shared-memory tiles. The block (32×32 threads) walks K in steps of 32;
// at each step every thread loads one element of A's tile and one of B's into
// shared memory, the block waits, and then each thread does 32 multiply-adds
// from shared memory. Each global load now feeds 32 multiply-adds instead of 1.
// Shared memory is still read twice per multiply-add, which is what v3 fixes.
constexpr int kTile2 = 32;

__global__ void sgemm_v2_shared(Gemm g) {
  __shared__ float As[kTile2][kTile2];
  __shared__ float Bs[kTile2][kTile2];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t m = blockIdx.y * kTile2 + ty, n = blockIdx.x * kTile2 + tx;
  float acc = 0.0f;
  for (int64_t k0 = 0; k0 < g.K; k0 += kTile2) {
    As[ty][tx] = a_at(g, m, k0 + tx);
    Bs[ty][tx] = b_at(g, k0 + ty, n);
    __syncthreads();
    // As[ty][k] is one address for the whole warp (a broadcast); Bs[k][tx] is 32
    // consecutive words: both conflict-free.
    for (int k = 0; k < kTile2; ++k) acc += As[ty][k] * Bs[k][tx];
    __syncthreads();  // before the next tile overwrites what others still read
  }
  store(g, m, n, acc);
}

// ---- v3: register blocking. A 64×64 block tile, K in steps of 16, 256 threads,
// each computing a 4×4 patch of C held in 16 registers. Per k a thread reads
// 4 values of A and 4 of B from shared memory and does 16 multiply-adds with
// them: shared-memory traffic per multiply-add falls from 2 to 0.5. The patch
// is strided (rows ty, ty + 16, …), so the 16 threads along x read 16
// consecutive words of Bs and write 16 consecutive columns of C.
constexpr int kBM3 = 64, kBN3 = 64, kBK3 = 16;

__global__ void __launch_bounds__(256) sgemm_v3_registers(Gemm g) {
  // A's tile is stored transposed (As[k][m]) so the inner loop reads it along m.
  // The +1 column staggers the banks: the loads write As[k][m] for 16 k at one
  // m, which without it would all land in one bank.
  __shared__ float As[kBK3][kBM3 + 1];
  __shared__ float Bs[kBK3][kBN3];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m0 = blockIdx.y * int64_t(kBM3), n0 = blockIdx.x * int64_t(kBN3);
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < g.K; k0 += kBK3) {
    for (int i = threadIdx.x; i < kBM3 * kBK3; i += 256) {
      const int am = i / kBK3, ak = i % kBK3;  // neighbouring threads: neighbouring k of one A row
      As[ak][am] = a_at(g, m0 + am, k0 + ak);
      const int bk = i / kBN3, bn = i % kBN3;  // neighbouring threads: neighbouring columns of B
      Bs[bk][bn] = b_at(g, k0 + bk, n0 + bn);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kBK3; ++k) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) store(g, m0 + ty + 16 * i, n0 + tx + 16 * j, acc[i][j]);
}

// ---- v4: bigger tiles, vectorised loads, double buffering. A 128×128 block
// tile and K in steps of 8; each of 256 threads owns an 8×8 patch (64
// accumulators): 16 values read from shared memory feed 64 multiply-adds.
// - Shared memory is read as float4: a thread's 8 rows are two runs of 4
//   (ty·4 and 64 + ty·4), likewise its columns, so a warp's 16-byte reads are
//   consecutive and conflict-free.
// - Global memory is read as float4 where the layout allows (unit column
//   stride, rows 16-byte aligned): 4× fewer load instructions.
// - Two shared buffers: while the block multiplies tile t from one, the
//   loads of tile t + 1 are already in flight into registers, and land in the
//   other buffer afterwards. One barrier per tile instead of two, and the
//   memory latency hides behind the arithmetic.
constexpr int kBM4 = 128, kBN4 = 128, kBK4 = 8;

// Four consecutive values of a row of X (rows, cols) starting at column c:
// one float4 when `vec` (then c is a multiple of 4 and the row is aligned),
// else element by element. Out of range: zeros.
__device__ inline float4 load4(const float* X, int64_t rs, int64_t cs, int64_t rows, int64_t cols, int64_t r,
                               int64_t c, bool vec) {
  if (r >= rows) return make_float4(0, 0, 0, 0);
  if (vec && c + 3 < cols) return *reinterpret_cast<const float4*>(X + r * rs + c);
  float v[4];
  for (int e = 0; e < 4; ++e) v[e] = c + e < cols ? X[r * rs + (c + e) * cs] : 0.0f;
  return make_float4(v[0], v[1], v[2], v[3]);
}

// One k step of an 8×8 patch (v4, v5): acc[i][j] += a[i]·b[j], the 8 values of
// A and of B each read from shared memory as two float4 (`a` at rows a0..a0+3
// and a1..a1+3 of As[k], `b` likewise from Bs[k]).
__device__ inline void multiply_8x8(float (&acc)[8][8], const float* As_k, int a0, int a1, const float* Bs_k, int b0,
                                    int b1) {
  const float4 a_lo = *reinterpret_cast<const float4*>(As_k + a0), a_hi = *reinterpret_cast<const float4*>(As_k + a1);
  const float4 b_lo = *reinterpret_cast<const float4*>(Bs_k + b0), b_hi = *reinterpret_cast<const float4*>(Bs_k + b1);
  const float a[8] = {a_lo.x, a_lo.y, a_lo.z, a_lo.w, a_hi.x, a_hi.y, a_hi.z, a_hi.w};
  const float b[8] = {b_lo.x, b_lo.y, b_lo.z, b_lo.w, b_hi.x, b_hi.y, b_hi.z, b_hi.w};
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] += a[i] * b[j];
}

__global__ void __launch_bounds__(256) sgemm_v4_vectorised(Gemm g, bool a_vec, bool b_vec) {
  __shared__ __align__(16) float As[2][kBK4][kBM4];  // transposed, as in v3
  __shared__ __align__(16) float Bs[2][kBK4][kBN4];
  const int t = threadIdx.x, tx = t % 16, ty = t / 16;
  const int64_t m0 = blockIdx.y * int64_t(kBM4), n0 = blockIdx.x * int64_t(kBN4);
  // Which 4 values of each tile this thread loads: A row t/2, k (t%2)·4 …;
  // B row t/32, columns (t%32)·4 …
  const int a_row = t / 2, a_k = (t % 2) * 4, b_row = t / 32, b_col = (t % 32) * 4;
  float4 a_next, b_next;
  auto fetch = [&](int64_t k0) {
    a_next = load4(g.A, g.a_rs, g.a_cs, g.M, g.K, m0 + a_row, k0 + a_k, a_vec);
    if (k0 + b_row < g.K)
      b_next = load4(g.B + (k0 + b_row) * g.b_rs, 0, g.b_cs, 1, g.N, 0, n0 + b_col, b_vec);
    else
      b_next = make_float4(0, 0, 0, 0);
  };
  auto park = [&](int buf) {
    As[buf][a_k + 0][a_row] = a_next.x;
    As[buf][a_k + 1][a_row] = a_next.y;
    As[buf][a_k + 2][a_row] = a_next.z;
    As[buf][a_k + 3][a_row] = a_next.w;
    *reinterpret_cast<float4*>(&Bs[buf][b_row][b_col]) = b_next;
  };

  float acc[8][8] = {};
  const int64_t tiles = (g.K + kBK4 - 1) / kBK4;
  fetch(0);
  park(0);
  __syncthreads();
  for (int64_t tile = 0; tile < tiles; ++tile) {
    const int cur = static_cast<int>(tile & 1);
    if (tile + 1 < tiles) fetch((tile + 1) * kBK4);  // in flight during the multiply below
#pragma unroll
    for (int k = 0; k < kBK4; ++k) multiply_8x8(acc, As[cur][k], ty * 4, 64 + ty * 4, Bs[cur][k], tx * 4, 64 + tx * 4);
    // The other buffer was last read in the previous iteration, and every thread
    // has passed that iteration's barrier: it is free to overwrite.
    if (tile + 1 < tiles) park(cur ^ 1);
    __syncthreads();
  }
  for (int i = 0; i < 8; ++i) {
    const int64_t m = m0 + (i < 4 ? ty * 4 + i : 64 + ty * 4 + (i - 4));
    for (int j = 0; j < 8; ++j) store(g, m, n0 + (j < 4 ? tx * 4 + j : 64 + tx * 4 + (j - 4)), acc[i][j]);
  }
}

// ---- v5: warp tiling, and K in steps of 16. The same 128×128 block tile and
// 8×8 outputs per thread as v4, but who computes what is arranged by warp:
// the 8 warps split the tile 2 × 4 into 64×32 warp tiles, and in a warp the 32
// lanes sit 8 (down) × 4 (across), each owning two 4×4 patches in each
// direction. Per k, each of a warp's two float4 reads of A covers 8 consecutive
// float4 (one 128-byte shared-memory wavefront) and each read of B 4 (64
// bytes): 4 wavefronts, against v4's 6 (its B reads span 256 bytes each) — the
// same arithmetic for a third fewer shared-memory transactions. BK = 16 halves the barriers per multiply-add; the two buffers
// (32 KiB) still fit the default 48 KiB of shared memory.
constexpr int kBM5 = 128, kBN5 = 128, kBK5 = 16;

__global__ void __launch_bounds__(256) sgemm_v5_warptiled(Gemm g, bool a_vec, bool b_vec) {
  __shared__ __align__(16) float As[2][kBK5][kBM5];  // transposed, as in v3 and v4
  __shared__ __align__(16) float Bs[2][kBK5][kBN5];
  const int t = threadIdx.x, warp = t / 32, lane = t % 32;
  const int warp_m = warp / 4, warp_n = warp % 4;  // 2 × 4 warps
  const int lane_m = lane / 4, lane_n = lane % 4;  // 8 × 4 lanes
  // This thread's rows: warp_m·64 + {0, 32} + lane_m·4 + (0..3); columns: warp_n·32 + {0, 16} + lane_n·4 + (0..3).
  const int row0 = warp_m * 64 + lane_m * 4, col0 = warp_n * 32 + lane_n * 4;
  const int64_t m0 = blockIdx.y * int64_t(kBM5), n0 = blockIdx.x * int64_t(kBN5);
  // Loads: A rows t/4 and 64 + t/4, k (t%4)·4 …; B rows t/32 and 8 + t/32, columns (t%32)·4 …
  const int a_row = t / 4, a_k = (t % 4) * 4, b_row = t / 32, b_col = (t % 32) * 4;
  float4 a_next[2], b_next[2];
  auto fetch = [&](int64_t k0) {
    for (int h = 0; h < 2; ++h) {
      a_next[h] = load4(g.A, g.a_rs, g.a_cs, g.M, g.K, m0 + a_row + 64 * h, k0 + a_k, a_vec);
      const int64_t k = k0 + b_row + 8 * h;
      b_next[h] = k < g.K ? load4(g.B + k * g.b_rs, 0, g.b_cs, 1, g.N, 0, n0 + b_col, b_vec) : make_float4(0, 0, 0, 0);
    }
  };
  auto park = [&](int buf) {
    for (int h = 0; h < 2; ++h) {
      const int r = a_row + 64 * h;
      As[buf][a_k + 0][r] = a_next[h].x;
      As[buf][a_k + 1][r] = a_next[h].y;
      As[buf][a_k + 2][r] = a_next[h].z;
      As[buf][a_k + 3][r] = a_next[h].w;
      *reinterpret_cast<float4*>(&Bs[buf][b_row + 8 * h][b_col]) = b_next[h];
    }
  };

  float acc[8][8] = {};
  const int64_t tiles = (g.K + kBK5 - 1) / kBK5;
  fetch(0);
  park(0);
  __syncthreads();
  for (int64_t tile = 0; tile < tiles; ++tile) {
    const int cur = static_cast<int>(tile & 1);
    if (tile + 1 < tiles) fetch((tile + 1) * kBK5);
#pragma unroll
    for (int k = 0; k < kBK5; ++k) multiply_8x8(acc, As[cur][k], row0, row0 + 32, Bs[cur][k], col0, col0 + 16);
    if (tile + 1 < tiles) park(cur ^ 1);
    __syncthreads();
  }
  for (int i = 0; i < 8; ++i) {
    const int64_t m = m0 + row0 + (i < 4 ? i : 32 + i - 4);
    for (int j = 0; j < 8; ++j) store(g, m, n0 + col0 + (j < 4 ? j : 16 + j - 4), acc[i][j]);
  }
}

// How each version is launched: the grid covers C in block tiles (x along N,
// y along M), the block is its threads. Both cuda/sgemm.cu and the emulator use it.
struct LaunchShape {
  dim3 grid, block;
  int64_t grid_rows;  // gridDim.y before narrowing (the launcher refuses more than 65535)
};
inline LaunchShape launch_shape(int version, int64_t M, int64_t N) {
  const int tile = version == 1 ? 16 : version == 2 ? kTile2 : version == 3 ? kBM3 : kBM4;  // square tiles (v5: 128 too)
  LaunchShape s;
  s.grid_rows = (M + tile - 1) / tile;
  s.grid.x = static_cast<unsigned>((N + tile - 1) / tile);
  s.grid.y = static_cast<unsigned>(s.grid_rows);
  if (version == 1) s.block.x = s.block.y = 16;
  if (version == 2) s.block.x = s.block.y = kTile2;
  if (version >= 3) s.block.x = 256;
  return s;
}

// v4 and v5 read global memory as float4 where the layout allows: unit column stride
// and every row start 16-byte aligned.
inline bool vector_rows(const float* p, int64_t row_stride, int64_t col_stride) {
  return col_stride == 1 && row_stride % 4 == 0 && (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

}  // namespace
}  // namespace minidl::cuda::sgemm
