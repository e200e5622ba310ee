// ops/cpu/gemm.cpp — C (M, N) = alpha · A (M, K) · B (K, N) + beta · C.
//
// Two implementations, tested against each other (tests/test_gemm.cpp):
//
// v1 reference: a plain blocked loop. It packs a K-block of B row-major so the
//    innermost loop reads B with stride 1, and splits rows of C across threads.
//    Readable, correct for any strides; used for f64 and as the yardstick.
//
// v2 packed (f32): the BLIS design. Compute-bound, so the aim is to keep the FMA
//    units busy: a micro-kernel holds an MR×NR tile of C in registers (14×32
//    floats = 28 zmm registers with AVX-512, 6×16 = 12 ymm with AVX2) and, for
//    each k, broadcasts MR values of A against NR values of B — one FMA per
//    loaded vector. Around it, A and B are packed into contiguous panels laid out
//    in exactly the order the micro-kernel reads them, blocked so that an MC×KC
//    block of A and the KC×NR panel of B in use stream from L2 (at KC = 512 the
//    64 KiB panel does not fit L1; measured, the L2 keeps up), and a KC×NC block
//    of B sits in L3. Packing also absorbs transposes: a transposed operand is
//    just other strides. The micro-kernel is that of the CPU path in use
//    (cpu_features.h, picked at run time from CPUID), so the default x86-64-v3
//    binary runs the AVX-512 kernels where the CPU has them and AVX2 elsewhere.
//
// Threads share each packed block of B (packed once, cooperatively) and split
// either the rows of C or the block's column panels among themselves; see gemm_thread.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <vector>

#include "core/dtype_dispatch.h"
#include "core/error.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"

namespace minidl::cpu {

namespace {

// ---------------------------------------------------------------- the epilogue

// C[r0:r0+rows, c0:c0+cols] (the tile at c) += bias, then max(·, 0). The packed
// GEMM calls it on each micro-tile right after its last K block, so the tile is
// still in L1; the reference GEMM calls it once on the whole of C.
template <class T>
void apply_epilogue(T* c, int64_t ldc, int64_t r0, int64_t rows, int64_t c0, int64_t cols, const GemmEpilogue& e) {
  const T* bias = static_cast<const T*>(e.bias);
  for (int64_t i = 0; i < rows; ++i) {
    T* row = c + i * ldc;
    if (bias && e.bias_per_row) {
      const T b = bias[r0 + i];
      for (int64_t j = 0; j < cols; ++j) row[j] += b;
    } else if (bias) {
      for (int64_t j = 0; j < cols; ++j) row[j] += bias[c0 + j];
    }
    if (e.relu)
      for (int64_t j = 0; j < cols; ++j) row[j] = row[j] > T(0) ? row[j] : T(0);
  }
}

bool has_epilogue(const GemmEpilogue& e) { return e.bias != nullptr || e.relu; }

// ---------------------------------------------------------------- v1: reference

constexpr int64_t kRefBlockK = 256;
constexpr int64_t kRefBlockM = 32;

template <class T>
void gemm_reference(int64_t M, int64_t N, int64_t K, T alpha, const TensorArg& A, const TensorArg& B, T beta,
                    const TensorArg& C) {
  const T* a = A.ptr<T>();
  const T* b = B.ptr<T>();
  T* c = C.ptr<T>();
  const int64_t a_rs = A.strides[0], a_cs = A.strides[1];
  const int64_t b_rs = B.strides[0], b_cs = B.strides[1];
  const int64_t c_rs = C.strides[0];

  // Scale C by beta first (beta == 0 overwrites, so C may hold garbage, even NaN).
  parallel_for(M * N > kParallelGrain, M, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = 0; j < N; ++j) c[i * c_rs + j] = beta == T(0) ? T(0) : beta * c[i * c_rs + j];
  });
  if (K == 0 || alpha == T(0)) return;

  std::vector<T> panel(static_cast<size_t>(std::min(K, kRefBlockK) * N));
  for (int64_t k0 = 0; k0 < K; k0 += kRefBlockK) {
    const int64_t kc = std::min(kRefBlockK, K - k0);
    // Pack B[k0:k0+kc, :] row-major: the inner loop below then reads it with stride 1.
    parallel_for(kc * N > kParallelGrain, kc, [&](int64_t p0, int64_t p1) {
      for (int64_t k = p0; k < p1; ++k)
        for (int64_t j = 0; j < N; ++j) panel[k * N + j] = b[(k0 + k) * b_rs + j * b_cs];
    });
    // Rows in blocks of kRefBlockM, so each block reuses the packed panel from cache.
    const int64_t blocks = (M + kRefBlockM - 1) / kRefBlockM;
    parallel_for(M * N * kc > 2 * kParallelGrain, blocks, [&](int64_t blk0, int64_t blk1) {
      for (int64_t i = blk0 * kRefBlockM; i < std::min(M, blk1 * kRefBlockM); ++i) {
        T* c_row = c + i * c_rs;
        for (int64_t k = 0; k < kc; ++k) {
          const T aik = alpha * a[i * a_rs + (k0 + k) * a_cs];
          const T* b_row = panel.data() + k * N;
          for (int64_t j = 0; j < N; ++j) c_row[j] += aik * b_row[j];
        }
      }
    });
  }
}

// ---------------------------------------------------------------- small M: no packing

// A few rows of C (inference at batch 1, a GEMV): packing would copy all of B to
// use each element once, costing more than the product itself. Instead each
// element of C is computed straight from A and B, in whichever order reads B
// contiguously:
//   B's columns contiguous (B = Wᵀ of a linear layer): c_ij = a_i · b_:j, a dot product;
//   B's rows contiguous:                                c_i: += a_ik · b_k:, an axpy.
// The dot form splits C's columns across threads, the axpy form B's rows (below).
//
// Up to how many rows each form beats packing. The dot form reads each column of
// B from memory once and from L1 for the other rows of A. On the Zen 5 VM it
// beat the packed kernel at 5 and 6 rows on every linear layer measured (1.03–
// 2.2×: 64×784 to 1024×1024 and 128×3136, docs/benchmarks.md), and at 8 rows
// lost where W fits in cache (0.94× on 64×784 and 256×512), so it stops at 6.
// The axpy form rewrites C's rows per k and stays at 4.
constexpr int64_t kSmallMDot = 6, kSmallMAxpy = 4;

// Whether gemm_small_m takes B by columns (the dot form) for these strides.
bool small_m_dot_form(const TensorArg& B) { return B.strides[0] == 1 || B.strides[1] != 1; }

// Columns per block in the axpy form: 4 rows of C in 16 KiB of f32, inside L1.
constexpr int64_t kAxpyBlock = 1024;

// C = beta·C + alpha · A[:, k0:k1] · B[k0:k1, :] for the small-M path, B's rows
// contiguous. The columns go in blocks whose M rows of C stay in L1 while B's
// rows stream past, four rows of B to each pass over the block: a quarter of the
// read-modify-writes of C that one row per pass would make.
template <class T>
void axpy_rows(int64_t M, int64_t N, int64_t k0, int64_t k1, T alpha, const T* a, int64_t a_rs, int64_t a_cs,
               const T* b, int64_t b_rs, T beta, T* c, int64_t c_rs) {
  for (int64_t jb = 0; jb < N; jb += kAxpyBlock) {
    const int64_t jn = std::min(N - jb, kAxpyBlock);
    for (int64_t i = 0; i < M; ++i) {
      T* ci = c + i * c_rs + jb;
      for (int64_t j = 0; j < jn; ++j) ci[j] = beta == T(0) ? T(0) : beta * ci[j];
    }
    int64_t k = k0;
    for (; k + 4 <= k1; k += 4) {
      const T* __restrict b0 = b + k * b_rs + jb;
      const T* __restrict b1 = b0 + b_rs;
      const T* __restrict b2 = b1 + b_rs;
      const T* __restrict b3 = b2 + b_rs;
      for (int64_t i = 0; i < M; ++i) {
        const T* ai = a + i * a_rs + k * a_cs;
        const T a0 = alpha * ai[0], a1 = alpha * ai[a_cs], a2 = alpha * ai[2 * a_cs], a3 = alpha * ai[3 * a_cs];
        T* __restrict ci = c + i * c_rs + jb;
        for (int64_t j = 0; j < jn; ++j) ci[j] += a0 * b0[j] + a1 * b1[j] + a2 * b2[j] + a3 * b3[j];
      }
    }
    for (; k < k1; ++k) {
      const T* __restrict bk = b + k * b_rs + jb;
      for (int64_t i = 0; i < M; ++i) {
        const T aik = alpha * a[i * a_rs + k * a_cs];
        T* __restrict ci = c + i * c_rs + jb;
        for (int64_t j = 0; j < jn; ++j) ci[j] += aik * bk[j];
      }
    }
  }
}

template <class T>
void gemm_small_m(int64_t M, int64_t N, int64_t K, T alpha, const TensorArg& A, const TensorArg& B, T beta,
                  const TensorArg& C) {
  const T* a = A.ptr<T>();
  const T* b = B.ptr<T>();
  T* c = C.ptr<T>();
  const int64_t a_rs = A.strides[0], a_cs = A.strides[1], b_rs = B.strides[0], b_cs = B.strides[1];
  const int64_t c_rs = C.strides[0];
  // A second thread pays from about 48 K multiply-adds (192 KiB of weights, ~2.8 µs
  // alone) against the ~1.4 µs a parallel region costs around this call (measured
  // on the 2-core VM: 64×512 4.1 µs alone, 4.5 µs on two). At the old 64 K
  // bound a 128×512 layer — a 256×512 one with half its neurons pruned — ran on
  // one thread, and shrinking it gained 1.09× instead of 1.4×.
  const bool parallel = N * K * M >= kGemvParallelMacs;
  if (small_m_dot_form(B)) {  // dot products along B's columns
    const bool unit_strides = a_cs == 1 && b_rs == 1;
    parallel_for(parallel, N, [&](int64_t j0, int64_t j1) {
      int64_t j = j0;
      if (unit_strides) {
        // Unit strides: four columns at a time (lane_dot4 in loops.h).
        for (; j + 4 <= j1; j += 4)
          for (int64_t i = 0; i < M; ++i) {
            const T* ai = a + i * a_rs;
            const T* bj = b + j * b_cs;
            const std::array<T, 4> acc =
                lane_dot4(K, ai, bj, bj + b_cs, bj + 2 * b_cs, bj + 3 * b_cs, [](T v) { return v; });
            for (int r = 0; r < 4; ++r) {
              T& out = c[i * c_rs + j + r];
              out = beta == T(0) ? alpha * acc[r] : alpha * acc[r] + beta * out;
            }
          }
      }
      for (; j < j1; ++j)
        for (int64_t i = 0; i < M; ++i) {
          const T* ai = a + i * a_rs;
          const T* bj = b + j * b_cs;
          T acc = 0;
          if (unit_strides) {
            // Partial sums per vector lane (loops.h), so the loop vectorises.
            acc = lane_sum<T>(K, [ai, bj](int64_t k) { return ai[k] * bj[k]; });
          } else {
            for (int64_t k = 0; k < K; ++k) acc += ai[k * a_cs] * bj[k * b_rs];
          }
          T& out = c[i * c_rs + j];
          out = beta == T(0) ? alpha * acc : alpha * acc + beta * out;
        }
    });
    return;
  }
  // axpy along B's rows. Each thread takes a contiguous range of B's rows (of k),
  // so that its reads are one sequential stream, and sums into rows of C of its
  // own; the threads' partial rows are added at the end (M·N values each, small
  // beside the M·N·K product). Splitting the columns instead had both threads
  // reading half of every row of B, at about half the speed on the Zen 5 VM.
  const int64_t parts = parallel ? std::min<int64_t>(max_threads(), K) : 1;
  std::vector<T> partial(static_cast<size_t>((parts - 1) * M * N));
  parallel_for(parallel, parts, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      T* out = p == 0 ? c : partial.data() + (p - 1) * M * N;
      axpy_rows<T>(M, N, K * p / parts, K * (p + 1) / parts, alpha, a, a_rs, a_cs, b, b_rs, p == 0 ? beta : T(0), out,
                   p == 0 ? c_rs : N);
    }
  });
  for (int64_t p = 1; p < parts; ++p)
    for (int64_t i = 0; i < M; ++i) {
      T* ci = c + i * c_rs;
      const T* pi = partial.data() + ((p - 1) * M + i) * N;
      for (int64_t j = 0; j < N; ++j) ci[j] += pi[j];
    }
}

// ---------------------------------------------------------------- v2: packed micro-kernels

// C tile (m × n, row stride ldc) = alpha · Ã·B̃ + beta · C, from packed panels:
// a = kc steps of MR values, b = kc steps of NR values. m <= MR, n <= NR.
using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                             float beta, int64_t m, int64_t n);

// Writes a finished register tile to C: full tiles straight from registers,
// edge tiles through a small buffer.
template <int MR, int NR>
inline void store_tile(const float (&acc)[MR][NR], float* c, int64_t ldc, float alpha, float beta, int64_t m, int64_t n) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float v = alpha * acc[i][j];
      c[i * ldc + j] = beta == 0.0f ? v : v + beta * c[i * ldc + j];
    }
}

// Plain C++: the fallback for CPUs with neither AVX2 nor AVX-512 (and a readable statement of the contract).
constexpr int kGenericMR = 4, kGenericNR = 8;
void kernel_generic(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta,
                    int64_t m, int64_t n) {
  float acc[kGenericMR][kGenericNR] = {};
  for (int64_t k = 0; k < kc; ++k, a += kGenericMR, b += kGenericNR)
    for (int i = 0; i < kGenericMR; ++i)
      for (int j = 0; j < kGenericNR; ++j) acc[i][j] += a[i] * b[j];
  store_tile<kGenericMR, kGenericNR>(acc, c, ldc, alpha, beta, m, n);
}

// AVX2 + FMA: 6 rows × 16 columns = 12 ymm accumulators, 2 B loads and 1 broadcast per step.
constexpr int kAvx2MR = 6, kAvx2NR = 16;
__attribute__((target("avx2,fma"))) void kernel_avx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                                                     float alpha, float beta, int64_t m, int64_t n) {
  __m256 acc[kAvx2MR][2];
  for (auto& row : acc) row[0] = row[1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a += kAvx2MR, b += kAvx2NR) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < kAvx2MR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  if (m == kAvx2MR && n == kAvx2NR) {
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    for (int i = 0; i < kAvx2MR; ++i)
      for (int h = 0; h < 2; ++h) {
        float* p = c + i * ldc + 8 * h;
        __m256 v = _mm256_mul_ps(va, acc[i][h]);
        if (beta != 0.0f) v = _mm256_fmadd_ps(vb, _mm256_loadu_ps(p), v);
        _mm256_storeu_ps(p, v);
      }
    return;
  }
  alignas(32) float tile[kAvx2MR][kAvx2NR];
  for (int i = 0; i < kAvx2MR; ++i) _mm256_store_ps(tile[i], acc[i][0]), _mm256_store_ps(tile[i] + 8, acc[i][1]);
  store_tile<kAvx2MR, kAvx2NR>(tile, c, ldc, alpha, beta, m, n);
}

// AVX-512: 14 rows × 32 columns = 28 zmm accumulators; 2 B loads and 14 broadcasts
// (folded into the FMAs as embedded broadcasts) per step: 28 FMAs per 2 loads.
constexpr int kAvx512MR = 14, kAvx512NR = 32;
__attribute__((target("avx512f"))) void kernel_avx512(int64_t kc, const float* a, const float* b, float* c,
                                                       int64_t ldc, float alpha, float beta, int64_t m, int64_t n) {
  __m512 acc[kAvx512MR][2];
  for (auto& row : acc) row[0] = row[1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a += kAvx512MR, b += kAvx512NR) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
    for (int i = 0; i < kAvx512MR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  if (m == kAvx512MR && n == kAvx512NR) {
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i = 0; i < kAvx512MR; ++i)
      for (int h = 0; h < 2; ++h) {
        float* p = c + i * ldc + 16 * h;
        __m512 v = _mm512_mul_ps(va, acc[i][h]);
        if (beta != 0.0f) v = _mm512_fmadd_ps(vb, _mm512_loadu_ps(p), v);
        _mm512_storeu_ps(p, v);
      }
    return;
  }
  alignas(64) float tile[kAvx512MR][kAvx512NR];
  for (int i = 0; i < kAvx512MR; ++i) _mm512_store_ps(tile[i], acc[i][0]), _mm512_store_ps(tile[i] + 16, acc[i][1]);
  store_tile<kAvx512MR, kAvx512NR>(tile, c, ldc, alpha, beta, m, n);
}

// Cache blocking: MC×KC of A (344 KiB) in L2, KC×NC of B (2 MiB, twice: see gemm_thread)
// in L3; each micro-kernel call reads an MR×KC panel of A (28 KiB) and a KC×NR
// panel of B (64 KiB, reused by the next call), mostly from L2. Measured on Zen 4, two cores, against OpenBLAS
// (docs/benchmarks.md): NC 3072 → 1024 took 2048³ from 0.78× to 0.97×; KC 256 → 512
// (C read and written half as often) to 1.04×; KC 192 was 0.95×.
constexpr int64_t kKC = 512, kMC = 168, kNC = 1024;

// A 64-byte-aligned scratch buffer per thread, grown on demand and reused:
// packing allocates nothing after the first call.
float* scratch(int slot, size_t floats) {
  struct Buffer {
    float* data = nullptr;
    size_t size = 0;
    ~Buffer() { std::free(data); }
  };
  thread_local Buffer buffers[2];
  Buffer& b = buffers[slot];
  if (b.size < floats) {
    std::free(b.data);
    size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
    b.data = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!b.data) throw Error("gemm: out of memory for packing buffers");
    b.size = floats;
  }
  return b.data;
}

// Packs A[i0:i0+mc, k0:k0+kc] into panels of MR rows: panel p holds, for each k,
// the MR values A[i0+p·MR+i, k0+k] (zero beyond the matrix).
void pack_a(const float* a, int64_t rs, int64_t cs, int64_t mc, int64_t kc, int64_t mr, float* out) {
  for (int64_t p = 0; p < mc; p += mr) {
    const int64_t rows = std::min(mr, mc - p);
    for (int64_t k = 0; k < kc; ++k) {
      const float* col = a + p * rs + k * cs;
      for (int64_t i = 0; i < rows; ++i) out[i] = col[i * rs];
      for (int64_t i = rows; i < mr; ++i) out[i] = 0.0f;
      out += mr;
    }
  }
}

// Packs B[k0:k0+kc, j0:j0+nc] into panels of NR columns: panel q holds, for each k,
// the NR values B[k0+k, j0+q·NR+j] (zero beyond the matrix).
void pack_b(const float* b, int64_t rs, int64_t cs, int64_t kc, int64_t nc, int64_t nr, float* out) {
  for (int64_t q = 0; q < nc; q += nr) {
    const int64_t cols = std::min(nr, nc - q);
    for (int64_t k = 0; k < kc; ++k) {
      const float* row = b + k * rs + q * cs;
      if (cs == 1) {
        std::copy_n(row, cols, out);
      } else {
        for (int64_t j = 0; j < cols; ++j) out[j] = row[j * cs];
      }
      for (int64_t j = cols; j < nr; ++j) out[j] = 0.0f;
      out += nr;
    }
  }
}

// The same packings for AVX-512 when the operand must be transposed on the way:
// A with contiguous rows (x·Wᵀ's x, im2col's cols) and B with contiguous columns
// (a transposed weight, colsᵀ in conv's weight gradient). The scalar loops above
// then read MR or NR rows one element at a time, a gather; here each row is read
// 16 elements at a time and 16 rows are transposed in registers, so every load
// and store is a whole vector.

// Transposes the 16×16 block held in r[0..15] (row i in r[i]) in place, in three
// rounds: interleave pairs of rows (2×2 blocks within 128-bit lanes), pairs of
// pairs (4×4 blocks within lanes), then move whole lanes between registers.
// (GCC 12's shuffle intrinsics start from _mm512_undefined_ps(), which its own
// -Wmaybe-uninitialized reports; the value is never read.)
#pragma GCC diagnostic push
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
__attribute__((target("avx512f"))) inline void transpose16(__m512 (&r)[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);      // per lane: a0 b0 a1 b1
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);  //           a2 b2 a3 b3
  }
  for (int g = 0; g < 16; g += 4)
    for (int h = 0; h < 2; ++h) {  // rows g..g+3: u[x] holds column 4L+x of the four rows in lane L
      const __m512d lo = _mm512_castps_pd(t[g + h]), hi = _mm512_castps_pd(t[g + h + 2]);
      r[g + 2 * h] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo, hi));
      r[g + 2 * h + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo, hi));
    }
  // r[4g + x], lane L: column 4L + x of rows 4g..4g+3. Gather lane L of the four
  // groups into one register: output row 4L + x.
  for (int x = 0; x < 4; ++x) {
    const __m512 w0 = _mm512_shuffle_f32x4(r[x], r[4 + x], 0x88);       // lanes 0,2 of groups 0,1
    const __m512 w1 = _mm512_shuffle_f32x4(r[x], r[4 + x], 0xdd);       // lanes 1,3 of groups 0,1
    const __m512 w2 = _mm512_shuffle_f32x4(r[8 + x], r[12 + x], 0x88);  // lanes 0,2 of groups 2,3
    const __m512 w3 = _mm512_shuffle_f32x4(r[8 + x], r[12 + x], 0xdd);  // lanes 1,3 of groups 2,3
    t[x] = _mm512_shuffle_f32x4(w0, w2, 0x88);       // lane 0
    t[4 + x] = _mm512_shuffle_f32x4(w1, w3, 0x88);   // lane 1
    t[8 + x] = _mm512_shuffle_f32x4(w0, w2, 0xdd);   // lane 2
    t[12 + x] = _mm512_shuffle_f32x4(w1, w3, 0xdd);  // lane 3
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}
#pragma GCC diagnostic pop

// r[i] := src[i·ld + 0 .. len) for the first `rows` rows, zero elsewhere (len <= 16).
__attribute__((target("avx512f"))) inline void load_rows16(__m512 (&r)[16], const float* src, int64_t ld,
                                                           int64_t rows, int64_t len) {
  const __mmask16 mask = static_cast<__mmask16>((1u << len) - 1);
  for (int64_t i = 0; i < 16; ++i)
    r[i] = i < rows ? _mm512_maskz_loadu_ps(mask, src + i * ld) : _mm512_setzero_ps();
}

// pack_a for rows of A contiguous (cs == 1): 14 rows × 16 k at a time.
__attribute__((target("avx512f"))) void pack_a_avx512(const float* a, int64_t rs, int64_t cs, int64_t mc,
                                                      int64_t kc, int64_t mr, float* out) {
  if (cs != 1 || mr > 16) return pack_a(a, rs, cs, mc, kc, mr, out);
  const __mmask16 row_mask = static_cast<__mmask16>((1u << mr) - 1);
  __m512 r[16];
  for (int64_t p = 0; p < mc; p += mr) {
    const int64_t rows = std::min(mr, mc - p);
    for (int64_t k = 0; k < kc; k += 16) {
      const int64_t len = std::min<int64_t>(16, kc - k);
      load_rows16(r, a + p * rs + k, rs, rows, len);
      transpose16(r);  // r[kk] = the MR values of column k + kk
      for (int64_t kk = 0; kk < len; ++kk) _mm512_mask_storeu_ps(out + (k + kk) * mr, row_mask, r[kk]);
    }
    out += kc * mr;
  }
}

// pack_b for columns of B contiguous (rs == 1): 16 columns × 16 k at a time.
__attribute__((target("avx512f"))) void pack_b_avx512(const float* b, int64_t rs, int64_t cs, int64_t kc,
                                                      int64_t nc, int64_t nr, float* out) {
  if (rs != 1 || cs == 1 || nr % 16 != 0) return pack_b(b, rs, cs, kc, nc, nr, out);
  __m512 r[16];
  for (int64_t q = 0; q < nc; q += nr) {
    const int64_t cols = std::min(nr, nc - q);
    for (int64_t h = 0; h < nr; h += 16)  // 16 of the panel's NR columns
      for (int64_t k = 0; k < kc; k += 16) {
        const int64_t len = std::min<int64_t>(16, kc - k);
        load_rows16(r, b + (q + h) * cs + k, cs, std::max<int64_t>(0, cols - h), len);
        transpose16(r);  // r[kk] = B[k + kk, q + h .. q + h + 16)
        for (int64_t kk = 0; kk < len; ++kk) _mm512_storeu_ps(out + (k + kk) * nr + h, r[kk]);
      }
    out += kc * nr;
  }
}

using PackFn = void (*)(const float* src, int64_t rs, int64_t cs, int64_t rows, int64_t cols, int64_t r,
                        float* out);

// A micro-kernel, its tile, and the packing routines that feed it.
struct KernelInfo {
  MicroKernel fn;
  int64_t mr, nr;
  PackFn pack_a, pack_b;
};

KernelInfo kernel_info(GemmKernel k) {
  switch (k) {
    case GemmKernel::avx512: return {kernel_avx512, kAvx512MR, kAvx512NR, pack_a_avx512, pack_b_avx512};
    case GemmKernel::avx2: return {kernel_avx2, kAvx2MR, kAvx2NR, pack_a, pack_b};
    default: return {kernel_generic, kGenericMR, kGenericNR, pack_a, pack_b};
  }
}

struct Operand {
  const float* p;
  int64_t rs, cs;
};

// Everything one packed GEMM call needs, shared by its threads.
struct PackedGemm {
  KernelInfo kern;
  int64_t M, N, K;
  float alpha, beta;
  Operand A, B;
  float* c;
  int64_t ldc;
  const GemmEpilogue* epi;
  float* bbuf[2];  // packed KC×NC blocks of B, shared by all threads: one being read, one being packed
};

// The BLIS loop nest. For each KC×NC block of B: the threads pack it together
// into a shared buffer (each packs a share of its NR-column panels), wait for
// each other, then multiply it with their share of the work, each thread packing
// the MC×KC blocks of A it needs into its own buffer. Blocks alternate between two
// buffers, so one barrier per block suffices: a thread packing block i+1 may
// overwrite block i−1 because every thread passed block i's barrier, and so
// finished block i−1, before any thread gets there. Two ways to share the work:
//   split_m: each thread takes a range of rows (whole MR tiles), so each block of
//            A is packed by exactly one thread — right when M is large;
//   else:    each thread takes a range of the block's NR panels, and every thread
//            packs the (small) A — right for the skinny M of a training batch.
// Either way B is packed once, not once per thread.
void gemm_thread(const PackedGemm& g, int64_t t, int64_t threads, bool split_m) {
  const int64_t mr = g.kern.mr, nr = g.kern.nr;
  float* abuf = scratch(1, static_cast<size_t>(kKC * ((kMC + mr - 1) / mr) * mr));
  const bool epilogue = has_epilogue(*g.epi);
  // This thread's rows [m0, m1) (whole MR tiles when splitting M).
  const int64_t m_units = (g.M + mr - 1) / mr;
  const int64_t m0 = split_m ? std::min(g.M, m_units * t / threads * mr) : 0;
  const int64_t m1 = split_m ? std::min(g.M, m_units * (t + 1) / threads * mr) : g.M;
  int64_t block = 0;  // blocks of B so far: picks the buffer
  for (int64_t jc = 0; jc < g.N; jc += kNC) {
    const int64_t nc = std::min(kNC, g.N - jc);
    const int64_t panels = (nc + nr - 1) / nr;
    // This thread's NR panels of the block: its share to pack, and (when not
    // splitting M) its share to multiply.
    const int64_t p0 = panels * t / threads, p1 = panels * (t + 1) / threads;
    for (int64_t pc = 0; pc < g.K; pc += kKC) {
      const int64_t kc = std::min(kKC, g.K - pc);
      float* bbuf = g.bbuf[block++ % 2];
      if (p1 > p0)
        g.kern.pack_b(g.B.p + pc * g.B.rs + (jc + p0 * nr) * g.B.cs, g.B.rs, g.B.cs, kc,
                      std::min(nc, p1 * nr) - p0 * nr, nr, bbuf + p0 * nr * kc);
      if (threads > 1) {
#pragma omp barrier
      }
      const float beta_here = pc == 0 ? g.beta : 1.0f;  // later K blocks accumulate
      const bool last_k = pc + kc == g.K;
      const int64_t j_lo = split_m ? 0 : p0 * nr, j_hi = split_m ? nc : std::min(nc, p1 * nr);
      for (int64_t ic = m0; ic < m1 && j_lo < j_hi; ic += kMC) {
        const int64_t mc = std::min(kMC, m1 - ic);
        g.kern.pack_a(g.A.p + ic * g.A.rs + pc * g.A.cs, g.A.rs, g.A.cs, mc, kc, mr, abuf);
        for (int64_t jr = j_lo; jr < j_hi; jr += nr)
          for (int64_t ir = 0; ir < mc; ir += mr) {
            float* tile = g.c + (ic + ir) * g.ldc + jc + jr;
            const int64_t rows = std::min(mr, mc - ir), cols = std::min(nr, nc - jr);
            g.kern.fn(kc, abuf + ir * kc, bbuf + jr * kc, tile, g.ldc, g.alpha, beta_here, rows, cols);
            if (epilogue && last_k) apply_epilogue(tile, g.ldc, ic + ir, rows, jc + jr, cols, *g.epi);
          }
      }
    }
  }
}

void gemm_packed(GemmKernel which, int64_t M, int64_t N, int64_t K, float alpha, const TensorArg& A,
                 const TensorArg& B, float beta, const TensorArg& C, const GemmEpilogue& epi) {
  float* c = C.ptr<float>();
  const int64_t ldc = C.strides[0];
  if (K == 0 || alpha == 0.0f) {  // only the beta scaling is left
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    apply_epilogue(c, ldc, 0, M, 0, N, epi);
    return;
  }
  const KernelInfo kern = kernel_info(which);
  // Below ~1 MFLOP a parallel region costs more than it saves.
  int64_t threads = 2.0 * static_cast<double>(M) * N * K > 1e6 && !in_parallel() ? max_threads() : 1;
  const int64_t m_units = (M + kern.mr - 1) / kern.mr, n_units = (N + kern.nr - 1) / kern.nr;
  // Split M when there are more row tiles than column panels (square and tall
  // products); skinny ones (a batch of rows against a wide weight) split N.
  // Measured: 1024³ 1.5× OpenBLAS splitting M; 256×4096×4096 0.7× splitting M, 1.0× splitting N.
  const bool split_m = m_units > n_units && m_units >= 4 * threads;
  threads = std::max<int64_t>(1, std::min(threads, split_m ? m_units : n_units));
  // The shared B block is sized for the largest block this call packs.
  const int64_t nc_max = std::min(kNC, N), kc_max = std::min(kKC, K);
  const size_t block_size = static_cast<size_t>(kc_max * ((nc_max + kern.nr - 1) / kern.nr) * kern.nr);
  float* bbuf = scratch(0, 2 * block_size);
  const PackedGemm g{kern, M, N, K, alpha, beta, {A.ptr<float>(), A.strides[0], A.strides[1]},
                     {B.ptr<float>(), B.strides[0], B.strides[1]}, c, ldc, &epi, {bbuf, bbuf + block_size}};
  if (threads == 1) {
    gemm_thread(g, 0, 1, false);
    return;
  }
#pragma omp parallel num_threads(threads)
  gemm_thread(g, thread_index(), team_size(), split_m);
}

// The packed kernel of the CPU path in use (cpu_features.h): read on every call,
// so MINIDL_CPU and ScopedCpuPath reach it.
GemmKernel best_kernel() {
  switch (cpu_path()) {
    case CpuPath::avx512: return GemmKernel::avx512;
    case CpuPath::avx2: return GemmKernel::avx2;
    case CpuPath::generic: break;
  }
  return GemmKernel::generic;
}

}  // namespace

bool gemm_kernel_supported(GemmKernel k) {
  switch (k) {
    case GemmKernel::avx512: return cpu_path_supported(CpuPath::avx512);
    case GemmKernel::avx2: return cpu_path_supported(CpuPath::avx2);
    default: return true;
  }
}

const char* gemm_kernel_name(GemmKernel k) {
  switch (k) {
    case GemmKernel::best: return gemm_kernel_name(best_kernel());
    case GemmKernel::reference: return "reference";
    case GemmKernel::generic: return "packed-generic";
    case GemmKernel::avx2: return "packed-avx2 (6x16)";
    case GemmKernel::avx512: return "packed-avx512 (14x32)";
    case GemmKernel::small_m: return "small-M (no packing)";
  }
  return "?";
}

void gemm(int64_t M, int64_t N, int64_t K, double alpha, const TensorArg& A, const TensorArg& B, double beta,
          const TensorArg& C, GemmKernel kernel, const GemmEpilogue& epilogue) {
  if (M == 0 || N == 0) return;
  if (kernel == GemmKernel::best && M <= (small_m_dot_form(B) ? kSmallMDot : kSmallMAxpy)) kernel = GemmKernel::small_m;
  if (kernel == GemmKernel::small_m) {
    {
      dispatch_f32_f64(C.dtype, "gemm", [&](auto tag) {
        using T = decltype(tag);
        gemm_small_m<T>(M, N, K, T(alpha), A, B, T(beta), C);
        if (has_epilogue(epilogue)) apply_epilogue(C.ptr<T>(), C.strides[0], 0, M, 0, N, epilogue);
      });
      return;
    }
  }
  if (kernel == GemmKernel::best) kernel = best_kernel();
  if (C.dtype == DType::f32 && kernel != GemmKernel::reference) {
    if (!gemm_kernel_supported(kernel)) throw Error(std::string("gemm: this CPU cannot run ") + gemm_kernel_name(kernel));
    gemm_packed(kernel, M, N, K, static_cast<float>(alpha), A, B, static_cast<float>(beta), C, epilogue);
    return;
  }
  dispatch_f32_f64(C.dtype, "gemm", [&](auto tag) {
    using T = decltype(tag);
    gemm_reference<T>(M, N, K, T(alpha), A, B, T(beta), C);
    if (has_epilogue(epilogue)) apply_epilogue(C.ptr<T>(), C.strides[0], 0, M, 0, N, epilogue);
  });
}

}  // namespace minidl::cpu
