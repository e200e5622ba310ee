// ops/cpu/spmm.cpp — C (rows, n) = W (rows, cols) · B (cols, n) with a sparse W.
//
// The layout. W is CSR (or BSR: r×c dense blocks); B is dense and row-major with
// its n columns the batch — for a Linear, B = xᵀ (features, batch); for a
// convolution, B is im2col's (C·kh·kw, positions) as it already comes. For one
// non-zero W[i, k] the work is then C[i, :] += W[i, k] · B[k, :]: one broadcast
// of the value and a contiguous, vectorisable row of B — where x (batch,
// features) would need a gather per element. (XNNPACK's sparse kernels make the
// same choice, vectorising over a convolution's spatial positions.)
//
// What bounds it. Dense GEMM reuses each loaded B vector across 14 rows of A in
// registers; a sparse row cannot, because its neighbours' non-zeros sit in other
// columns. So per non-zero and per 16 columns of B the kernel pays one load and
// one FMA: it is load-bound at best, near half of dense's FMA rate, and the
// crossover is where 1 − sparsity ≈ that fraction. Two tricks keep it there:
//   - a tile of 64 columns (four zmm accumulators, eight with the two sets
//     below) per row, so the value and the column index are read once per 64
//     products, not once per 16;
//   - the non-zeros of a row take turns between accumulator sets (two, or four
//     for a one-vector tile: kChains), so independent FMA chains hide the FMA
//     latency.
// The 64-column panel of B (cols × 256 B: 1 MiB at 4096 columns) stays in L2
// while every row of this thread's range walks it.
//
// BSR turns the inner step back into a small dense product: a block of r×c
// values meets c rows of B, and each loaded B vector feeds r FMAs (up to 4 rows
// at a time here), which is why it crosses dense at lower sparsity than CSR.
//
// Batch 1 (n == 1) has nothing to vectorise over: it is the matrix-vector
// product. By its bytes it would cross dense early (4 B value + 2 or 4 B index
// per non-zero against dense's 4 B per weight; 16-bit indices where cols ≤
// 65536), but every non-zero also needs x[col], an indexed load, and that is
// what bounds it. Where the gather instruction is fast (Intel) it fetches 16 of
// them at once; where it is microcode (AMD) scalar loads placed into a vector's
// lanes are faster (ByLoads). Fastest of all, where the matrix has it, is the
// panel layout (spmv_panels_avx512): x held in registers, sixteen fetched by
// one permute.
//
// A narrow batch (n = 2 to 8) reads each row of B with one load of exactly its
// width (csr_tile_narrow: plain at 2, 4 and 8, masked to n of 4 or 8 lanes
// otherwise), where the tile kernels would use 16-lane masked loads, mostly
// empty at these widths.
//
// Rows of unequal length: threads get contiguous row ranges holding equal
// numbers of non-zeros (a binary search in row_ptr), not equal numbers of rows.
//
// Kernels, tested against each other and against dense f64 (tests/test_sparse.cpp):
//   v1 reference: the plain loop over the non-zeros, any format, any CPU.
//   v2 avx2: CSR, 32 columns per tile (4 ymm); batch 1 by gathers of 8, or
//      (avx2_loads) by scalar loads eight to a vector.
//   v3 avx512: CSR and BSR, 64 columns per tile (4 zmm); batch 1 by gathers
//      of 16, or (avx512_loads) by the same scalar loads as avx2_loads.
//   avx512_panels: avx512, with batch 1 from the panel layout.
//   Both CSR paths take batches of 2 to 8 to csr_tile_narrow (AVX2).
#include <immintrin.h>

// GCC 12 warns that its own AVX-512 intrinsic headers read an uninitialised
// `__Y` (the _mm512_undefined_* placeholder of a masked convert or gather): a
// known false positive, silenced here alone.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"

namespace minidl::cpu {

namespace {

// Below this many multiply-adds one thread does the product alone.
constexpr int64_t kSpmmParallelWork = 1 << 13;

// The plain pieces every kernel shares: where block p's column starts, and the
// epilogue of one output value.
int64_t block_column(const SparseMatrixArg& w, int64_t p) {
  return w.index16 ? static_cast<const uint16_t*>(w.col_index)[p] : static_cast<const int32_t*>(w.col_index)[p];
}

float finish(float v, int64_t row, const GemmEpilogue& e) {
  if (e.bias) v += static_cast<const float*>(e.bias)[row];
  return e.relu ? (v > 0.0f ? v : 0.0f) : v;
}

// Block rows [begin, end) for thread t of `threads`, holding about an equal share
// of the non-zero blocks: row i's share starts where row_ptr passes t/threads of them.
std::pair<int64_t, int64_t> balanced_rows(const SparseMatrixArg& w, int64_t block_rows, int64_t t, int64_t threads) {
  const int32_t* rp = w.row_ptr;
  const int64_t total = rp[block_rows];
  auto boundary = [&](int64_t k) -> int64_t {
    if (k == 0) return 0;
    if (k == threads) return block_rows;
    const int64_t target = total * k / threads;
    // First row whose entries start at or after the target; rows with no
    // entries at all are split evenly so empty matrices still spread.
    if (total == 0) return block_rows * k / threads;
    return std::lower_bound(rp, rp + block_rows, target) - rp;
  };
  return {boundary(t), boundary(t + 1)};
}

// ---------------------------------------------------------------- v1: reference

void spmm_reference(const SparseMatrixArg& w, const TensorArg& B, const TensorArg& C, const GemmEpilogue& e) {
  const int64_t r = w.block_rows, c = w.block_cols, n = B.shape[1];
  const int64_t ldb = B.strides[0], ldc = C.strides[0];
  const float* b = B.ptr<float>();
  float* out = C.ptr<float>();
  std::vector<float> acc(static_cast<size_t>(n));
  for (int64_t br = 0; br < w.rows / r; ++br)
    for (int64_t i = 0; i < r; ++i) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t p = w.row_ptr[br]; p < w.row_ptr[br + 1]; ++p) {
        const int64_t col0 = block_column(w, p) * c;
        for (int64_t j = 0; j < c; ++j) {
          const float v = w.values[(p * r + i) * c + j];
          const float* brow = b + (col0 + j) * ldb;
          for (int64_t t = 0; t < n; ++t) acc[t] += v * brow[t];
        }
      }
      const int64_t row = br * r + i;
      for (int64_t t = 0; t < n; ++t) out[row * ldc + t] = finish(acc[t], row, e);
    }
}

// Accumulator sets per row in the tile kernels, each taking every S-th non-zero:
// one chain of FMAs waits on the one before (4 cycles), so a narrow batch, one
// vector per row, needs more independent chains to keep the loads busy than a
// wide one, whose V vectors are already V chains.
template <int V>
constexpr int kChains = V == 1 ? 4 : 2;

// ---------------------------------------------------------------- v2: AVX2 (CSR)

// The 8-lane mask of the lanes of vector v below `width` (maskload wants ints).
__attribute__((target("avx2"))) inline __m256i lanes_below8(int64_t width, int v) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::clamp<int64_t>(width - 8 * v, 0, 8))), lane);
}

// acc[v] += value · the v-th eight of the masked lanes at brow: one non-zero's step.
template <int V>
__attribute__((target("avx2,fma"))) inline void madd8(__m256 (&acc)[V], float value, const float* brow,
                                                      const __m256i (&mask)[V]) {
  const __m256 broadcast = _mm256_set1_ps(value);
  for (int v = 0; v < V; ++v) acc[v] = _mm256_fmadd_ps(broadcast, _mm256_maskload_ps(brow + 8 * v, mask[v]), acc[v]);
}

// Rows [r0, r1) of C, columns [j0, j0 + width), width ≤ 8·V.
template <int V, class Index>
__attribute__((target("avx2,fma"))) void csr_tile_avx2(const SparseMatrixArg& w, const Index* col, const float* b,
                                                       int64_t ldb, float* c, int64_t ldc, int64_t j0, int64_t width,
                                                       int64_t r0, int64_t r1, const GemmEpilogue& e) {
  __m256i mask[V];
  for (int v = 0; v < V; ++v) mask[v] = lanes_below8(width, v);
  const float* bias = static_cast<const float*>(e.bias);
  for (int64_t row = r0; row < r1; ++row) {
    constexpr int S = kChains<V>;
    __m256 acc[S][V];
    for (int k = 0; k < S; ++k)
      for (int v = 0; v < V; ++v) acc[k][v] = _mm256_setzero_ps();
    int64_t p = w.row_ptr[row];
    const int64_t end = w.row_ptr[row + 1];
    const float* brow = b + j0;
    for (; p + S <= end; p += S)
      for (int k = 0; k < S; ++k) madd8(acc[k], w.values[p + k], brow + static_cast<int64_t>(col[p + k]) * ldb, mask);
    for (; p < end; ++p) madd8(acc[0], w.values[p], brow + static_cast<int64_t>(col[p]) * ldb, mask);
    const __m256 bv = _mm256_set1_ps(bias ? bias[row] : 0.0f);
    float* out = c + row * ldc + j0;
    for (int v = 0; v < V; ++v) {
      __m256 s = bv;
      for (int k = 0; k < S; ++k) s = _mm256_add_ps(s, acc[k][v]);
      if (e.relu) s = _mm256_max_ps(s, _mm256_setzero_ps());
      _mm256_maskstore_ps(out + 8 * v, mask[v], s);
    }
  }
}

// Eight column indices as int32 lanes.
template <class Index>
__attribute__((target("avx2"))) inline __m256i indices8(const Index* col) {
  if constexpr (sizeof(Index) == 2)
    return _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(col)));
  else
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col));
}

// The sum of a vector's eight lanes.
__attribute__((target("avx2"))) inline float sum8(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// Batch 1, eight lanes at a time: y[row] = Σ values · x[col], with x[col[p]] for
// eight non-zeros fetched by `Fetch`: one vgatherdps (ByGather) or eight scalar
// loads put into their lanes (ByLoads, below).
template <class Fetch, class Index>
__attribute__((target("avx2,fma"))) void csr_spmv8(const SparseMatrixArg& w, const Index* col, const float* x, float* y,
                                                   int64_t ldy, int64_t r0, int64_t r1, const GemmEpilogue& e) {
  for (int64_t row = r0; row < r1; ++row) {
    int64_t p = w.row_ptr[row];
    const int64_t end = w.row_ptr[row + 1];
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; p + 16 <= end; p += 16) {
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w.values + p), Fetch::eight(x, col + p), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(w.values + p + 8), Fetch::eight(x, col + p + 8), acc1);
    }
    if (p + 8 <= end) {
      acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w.values + p), Fetch::eight(x, col + p), acc0);
      p += 8;
    }
    float sum = sum8(_mm256_add_ps(acc0, acc1));
    for (; p < end; ++p) sum += w.values[p] * x[col[p]];
    y[row * ldy] = finish(sum, row, e);
  }
}

struct ByGather {
  template <class Index>
  __attribute__((target("avx2,fma"))) static __m256 eight(const float* x, const Index* col) {
    return _mm256_i32gather_ps(x, indices8(col), 4);
  }
};

// Without the gather instruction: each of the eight x[col] by a scalar load put
// into its lane as it is loaded (vinsertps takes a memory operand), two halves
// joined. AMD's Zen cores run vgatherdps as microcode: on the Zen 5 VM this does
// the 1024×1024 product at 70% sparsity in 50 µs against the 16-lane gathers'
// 72 µs (docs/benchmarks.md). So `best` picks it on AMD (gathers_pay) and keeps
// the gathers on Intel, whose gather units fetch several lanes per cycle. Eight
// lanes suffice: the loads, not the FMAs, are what it waits on (a 16-lane
// version ran no faster in a trial, nor did reading four 16-bit indices in one
// 8-byte load).
struct ByLoads {
  template <class Index>
  __attribute__((target("avx2,fma"))) static __m128 four(const float* x, const Index* col) {
    __m128 q = _mm_load_ss(x + col[0]);
    q = _mm_insert_ps(q, _mm_load_ss(x + col[1]), 0x10);  // imm8 bits 5:4: the lane written
    q = _mm_insert_ps(q, _mm_load_ss(x + col[2]), 0x20);
    return _mm_insert_ps(q, _mm_load_ss(x + col[3]), 0x30);
  }
  template <class Index>
  __attribute__((target("avx2,fma"))) static __m256 eight(const float* x, const Index* col) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(four(x, col)), four(x, col + 4), 1);
  }
};

// A narrow batch, n = 2, 4 or 8: each non-zero meets exactly n floats of B, read
// by one plain load of that width (8 bytes, an xmm or a ymm) where the tile
// kernels use masked vector loads, mostly empty at these widths. With xᵀ packed
// (sparse_linear) and four accumulators it runs the 1024×1024 product at 70%
// and batch 2 in 0.58 of the tile kernel's time on the Zen 5 VM
// (docs/benchmarks.md). Used by both paths (it needs AVX2 alone).
template <int W>
__attribute__((target("avx2,fma"))) inline auto broadcast(float v) {  // the vector type: __m256 or __m128
  if constexpr (W == 8)
    return _mm256_set1_ps(v);
  else
    return _mm_set1_ps(v);
}
template <int W>
using NarrowVec = decltype(broadcast<W>(0.0f));

template <int W>
__attribute__((target("avx2,fma"))) inline NarrowVec<W> load_exact(const float* p) {
  if constexpr (W == 8)
    return _mm256_loadu_ps(p);
  else if constexpr (W == 4)
    return _mm_loadu_ps(p);
  else
    return _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));  // two floats, then zeros
}
template <int W>
__attribute__((target("avx2,fma"))) inline void store_exact(float* p, NarrowVec<W> v) {
  if constexpr (W == 8)
    _mm256_storeu_ps(p, v);
  else if constexpr (W == 4)
    _mm_storeu_ps(p, v);
  else
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_castps_si128(v));
}
__attribute__((target("avx2,fma"))) inline __m128 madd(__m128 a, __m128 b, __m128 c) { return _mm_fmadd_ps(a, b, c); }
__attribute__((target("avx2,fma"))) inline __m256 madd(__m256 a, __m256 b, __m256 c) {
  return _mm256_fmadd_ps(a, b, c);
}
__attribute__((target("avx2,fma"))) inline __m128 add(__m128 a, __m128 b) { return _mm_add_ps(a, b); }
__attribute__((target("avx2,fma"))) inline __m256 add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
__attribute__((target("avx2,fma"))) inline __m128 relu(__m128 a) { return _mm_max_ps(a, _mm_setzero_ps()); }
__attribute__((target("avx2,fma"))) inline __m256 relu(__m256 a) { return _mm256_max_ps(a, _mm256_setzero_ps()); }

// The first n of W floats, the rest zeros (n < W; W = 4 or 8): a masked load,
// which never touches the memory past them.
template <int W>
struct FirstLanes {
  NarrowVec<W> mask;
  int n;
};
template <int W>
__attribute__((target("avx2,fma"))) inline FirstLanes<W> first_lanes(int n) {
  alignas(32) int32_t bits[8] = {};
  for (int l = 0; l < n; ++l) bits[l] = -1;
  if constexpr (W == 8)
    return {_mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(bits))), n};
  else
    return {_mm_castsi128_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(bits))), n};
}
template <int W>
__attribute__((target("avx2,fma"))) inline NarrowVec<W> load_first(const float* p, const FirstLanes<W>& f) {
  if constexpr (W == 8)
    return _mm256_maskload_ps(p, _mm256_castps_si256(f.mask));
  else
    return _mm_maskload_ps(p, _mm_castps_si128(f.mask));
}
template <int W>
__attribute__((target("avx2,fma"))) inline void store_first(float* p, NarrowVec<W> v, const FirstLanes<W>& f) {
  alignas(32) float out[W];
  store_exact<W>(out, v);
  for (int l = 0; l < f.n; ++l) p[l] = out[l];  // (a masked store is slow on AMD)
}

template <int W, bool Masked>
__attribute__((target("avx2,fma"))) inline NarrowVec<W> load_narrow(const float* p, const FirstLanes<W>& first) {
  if constexpr (Masked)
    return load_first<W>(p, first);
  else
    return load_exact<W>(p);
}

// Rows [r0, r1) of C (rows, n) from B (cols, n), four accumulators per row
// (kChains<1>). n = W, or with `first` any n below W (3 in 4 lanes, 5–7 in 8):
// masked loads of n floats, where the tile kernel would use 16-lane ones.
template <int W, bool Masked, class Index>
__attribute__((target("avx2,fma"))) void csr_tile_narrow(const SparseMatrixArg& w, const Index* col, const float* b,
                                                         int64_t ldb, float* c, int64_t ldc, int64_t r0, int64_t r1,
                                                         const GemmEpilogue& e, FirstLanes<W> first = FirstLanes<W>{}) {
  constexpr int S = kChains<1>;
  const float* bias = static_cast<const float*>(e.bias);
  for (int64_t row = r0; row < r1; ++row) {
    NarrowVec<W> acc[S];
    for (int k = 0; k < S; ++k) acc[k] = broadcast<W>(0.0f);
    int64_t p = w.row_ptr[row];
    const int64_t end = w.row_ptr[row + 1];
    for (; p + S <= end; p += S)
      for (int k = 0; k < S; ++k)
        acc[k] = madd(broadcast<W>(w.values[p + k]),
                      load_narrow<W, Masked>(b + static_cast<int64_t>(col[p + k]) * ldb, first), acc[k]);
    for (; p < end; ++p)
      acc[0] = madd(broadcast<W>(w.values[p]), load_narrow<W, Masked>(b + static_cast<int64_t>(col[p]) * ldb, first),
                    acc[0]);
    NarrowVec<W> sum = broadcast<W>(bias ? bias[row] : 0.0f);
    for (int k = 0; k < S; ++k) sum = add(sum, acc[k]);
    if (e.relu) sum = relu(sum);
    if constexpr (Masked)
      store_first<W>(c + row * ldc, sum, first);
    else
      store_exact<W>(c + row * ldc, sum);
  }
}

// ---------------------------------------------------------------- v3: AVX-512

__attribute__((target("avx512f"))) inline __mmask16 lanes_below16(int64_t width, int v) {
  const int64_t left = std::clamp<int64_t>(width - 16 * v, 0, 16);
  return static_cast<__mmask16>((1u << left) - 1u);
}

// acc[v] += value · the v-th sixteen of the masked lanes at brow.
template <int V>
__attribute__((target("avx512f"))) inline void madd16(__m512 (&acc)[V], float value, const float* brow,
                                                      const __mmask16 (&mask)[V]) {
  const __m512 broadcast = _mm512_set1_ps(value);
  for (int v = 0; v < V; ++v)
    acc[v] = _mm512_fmadd_ps(broadcast, _mm512_maskz_loadu_ps(mask[v], brow + 16 * v), acc[v]);
}

// Rows [r0, r1) of C, columns [j0, j0 + width), width ≤ 16·V.
template <int V, class Index>
__attribute__((target("avx512f"))) void csr_tile_avx512(const SparseMatrixArg& w, const Index* col, const float* b,
                                                        int64_t ldb, float* c, int64_t ldc, int64_t j0, int64_t width,
                                                        int64_t r0, int64_t r1, const GemmEpilogue& e) {
  __mmask16 mask[V];
  for (int v = 0; v < V; ++v) mask[v] = lanes_below16(width, v);
  const float* bias = static_cast<const float*>(e.bias);
  for (int64_t row = r0; row < r1; ++row) {
    constexpr int S = kChains<V>;
    __m512 acc[S][V];
    for (int k = 0; k < S; ++k)
      for (int v = 0; v < V; ++v) acc[k][v] = _mm512_setzero_ps();
    int64_t p = w.row_ptr[row];
    const int64_t end = w.row_ptr[row + 1];
    const float* brow = b + j0;
    for (; p + S <= end; p += S)
      for (int k = 0; k < S; ++k) madd16(acc[k], w.values[p + k], brow + static_cast<int64_t>(col[p + k]) * ldb, mask);
    for (; p < end; ++p) madd16(acc[0], w.values[p], brow + static_cast<int64_t>(col[p]) * ldb, mask);
    const __m512 bv = _mm512_set1_ps(bias ? bias[row] : 0.0f);
    float* out = c + row * ldc + j0;
    for (int v = 0; v < V; ++v) {
      __m512 s = bv;
      for (int k = 0; k < S; ++k) s = _mm512_add_ps(s, acc[k][v]);
      if (e.relu) s = _mm512_max_ps(s, _mm512_setzero_ps());
      _mm512_mask_storeu_ps(out + 16 * v, mask[v], s);
    }
  }
}

// Sixteen column indices as int32 lanes, widened from 16 bits where they are stored so.
template <class Index>
__attribute__((target("avx512f"))) inline __m512i indices16(const Index* col) {
  if constexpr (sizeof(Index) == 2)
    return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(col)));
  else
    return _mm512_loadu_si512(col);
}
// The first lanes of m only, reading nothing past them (the AVX-512 path
// includes BW and VL: cpu_features.h).
template <class Index>
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512i indices16(const Index* col, __mmask16 m) {
  if constexpr (sizeof(Index) == 2)
    return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, col));
  else
    return _mm512_maskz_loadu_epi32(m, col);
}

// Batch 1: y[row] = Σ values · x[col], sixteen gathered at a time; the tail is a
// masked gather, which reads nothing for the lanes it leaves out.
template <class Index>
__attribute__((target("avx512f,avx512bw,avx512vl"))) void csr_spmv_avx512(const SparseMatrixArg& w, const Index* col, const float* x,
                                                        float* y, int64_t ldy, int64_t r0, int64_t r1,
                                                        const GemmEpilogue& e) {
  for (int64_t row = r0; row < r1; ++row) {
    int64_t p = w.row_ptr[row];
    const int64_t end = w.row_ptr[row + 1];
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (; p + 32 <= end; p += 32) {
      acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(w.values + p), _mm512_i32gather_ps(indices16(col + p), x, 4), acc0);
      acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(w.values + p + 16), _mm512_i32gather_ps(indices16(col + p + 16), x, 4), acc1);
    }
    for (; p < end; p += 16) {
      const __mmask16 m = lanes_below16(end - p, 0);
      const __m512 g = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, indices16(col + p, m), x, 4);
      acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w.values + p), g, acc1);
    }
    y[row * ldy] = finish(_mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)), row, e);
  }
}

// Batch 1 from the panel layout (PanelMatrixArg): sixteen rows at once, one per
// lane. A panel's 32 values of x sit in two registers, and one vpermt2ps fetches
// the x of sixteen non-zeros from them by their 5-bit columns — where the CSR
// kernels above fetch one element per load. What it pays instead is padding: a
// step runs all sixteen lanes, so a slice's rows take as many steps in a panel
// as the longest of them needs there.
__attribute__((target("avx512f"))) inline __m512 panel_fetch(__m512 lo, __m512 hi, const uint8_t* column) {
  const __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(column)));
  return _mm512_permutex2var_ps(lo, idx, hi);  // lanes 0–15 from lo, 16–31 from hi
}

// Steps [t, end) of one slice's panel against that panel's x, in lo (columns
// 0–15) and hi (16–31), into two accumulators.
__attribute__((target("avx512f"))) inline void panel_steps(const PanelMatrixArg& w, int64_t t, int64_t end,
                                                           __m512 lo, __m512 hi, __m512& acc0, __m512& acc1) {
  constexpr int64_t L = PanelMatrixArg::kPanelLanes;
  for (; t + 2 <= end; t += 2) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(w.values + t * L), panel_fetch(lo, hi, w.column + t * L), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(w.values + (t + 1) * L), panel_fetch(lo, hi, w.column + (t + 1) * L), acc1);
  }
  if (t < end) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(w.values + t * L), panel_fetch(lo, hi, w.column + t * L), acc0);
}

// Slices [s0, s1) of y; x holds w.cols values (the last panel's x is loaded
// masked where the columns do not fill it).
__attribute__((target("avx512f"))) void spmv_panels_avx512(const PanelMatrixArg& w, const float* x, float* y,
                                                           int64_t ldy, int64_t s0, int64_t s1, const GemmEpilogue& e) {
  constexpr int64_t L = PanelMatrixArg::kPanelLanes, P = PanelMatrixArg::kPanelWidth;
  const float* bias = static_cast<const float*>(e.bias);
  const int64_t whole = w.cols / P;  // panels with all 32 columns
  const __mmask16 tail_lo = lanes_below16(w.cols - whole * P, 0), tail_hi = lanes_below16(w.cols - whole * P, 1);
  for (int64_t s = s0; s < s1; ++s) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    const int32_t* steps = w.step_ptr + s * w.panels;
    for (int64_t q = 0; q < whole; ++q)
      panel_steps(w, steps[q], steps[q + 1], _mm512_loadu_ps(x + q * P), _mm512_loadu_ps(x + q * P + 16), acc0, acc1);
    if (whole < w.panels)
      panel_steps(w, steps[whole], steps[whole + 1], _mm512_maskz_loadu_ps(tail_lo, x + whole * P),
                  _mm512_maskz_loadu_ps(tail_hi, x + whole * P + 16), acc0, acc1);
    const int64_t row0 = s * L, lanes = std::min(L, w.rows - row0);
    const __mmask16 rows = lanes_below16(lanes, 0);
    __m512 sum = _mm512_add_ps(acc0, acc1);
    if (bias) sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(rows, bias + row0));
    if (e.relu) sum = _mm512_max_ps(sum, _mm512_setzero_ps());
    if (ldy == 1) {
      _mm512_mask_storeu_ps(y + row0, rows, sum);
    } else {
      alignas(64) float out[L];
      _mm512_store_ps(out, sum);
      for (int64_t l = 0; l < lanes; ++l) y[(row0 + l) * ldy] = out[l];
    }
  }
}

// BSR, block rows [br0, br1), columns [j0, j0 + width): R (1 or 4) rows of a
// block at a time against the C rows of B each block meets.
template <int R, int C, int V>
__attribute__((target("avx512f"))) void bsr_tile_avx512(const SparseMatrixArg& w, const float* b, int64_t ldb,
                                                        float* c, int64_t ldc, int64_t j0, int64_t width, int64_t br0,
                                                        int64_t br1, const GemmEpilogue& e) {
  const int64_t r = w.block_rows;
  __mmask16 mask[V];
  for (int v = 0; v < V; ++v) mask[v] = lanes_below16(width, v);
  const float* bias = static_cast<const float*>(e.bias);
  for (int64_t br = br0; br < br1; ++br)
    for (int64_t i0 = 0; i0 < r; i0 += R) {
      __m512 acc[R][V];
      for (int i = 0; i < R; ++i)
        for (int v = 0; v < V; ++v) acc[i][v] = _mm512_setzero_ps();
      for (int64_t p = w.row_ptr[br]; p < w.row_ptr[br + 1]; ++p) {
        const float* x = b + block_column(w, p) * C * ldb + j0;
        const float* block = w.values + (p * r + i0) * C;  // rows i0 .. i0 + R of the block, C each
        for (int j = 0; j < C; ++j) {
          __m512 xv[V];
          for (int v = 0; v < V; ++v) xv[v] = _mm512_maskz_loadu_ps(mask[v], x + j * ldb + 16 * v);
          for (int i = 0; i < R; ++i) {
            const __m512 value = _mm512_set1_ps(block[i * C + j]);
            for (int v = 0; v < V; ++v) acc[i][v] = _mm512_fmadd_ps(value, xv[v], acc[i][v]);
          }
        }
      }
      for (int i = 0; i < R; ++i) {
        const int64_t row = br * r + i0 + i;
        const __m512 bv = _mm512_set1_ps(bias ? bias[row] : 0.0f);
        for (int v = 0; v < V; ++v) {
          __m512 s = _mm512_add_ps(acc[i][v], bv);
          if (e.relu) s = _mm512_max_ps(s, _mm512_setzero_ps());
          _mm512_mask_storeu_ps(c + row * ldc + j0 + 16 * v, mask[v], s);
        }
      }
    }
}

// BSR at batch 1: each block is a small dense (R, C) · (C) product. acc keeps one
// partial sum per value position (independent chains, which the compiler turns
// into whole-vector FMAs for C = 4, 8, 16) and is reduced once per block row.
template <int R, int C>
__attribute__((target("avx512f"))) void bsr_spmv_avx512(const SparseMatrixArg& w, const float* x, float* y,
                                                        int64_t ldy, int64_t br0, int64_t br1, const GemmEpilogue& e) {
  for (int64_t br = br0; br < br1; ++br) {
    float acc[R][C] = {};
    for (int64_t p = w.row_ptr[br]; p < w.row_ptr[br + 1]; ++p) {
      const float* xs = x + block_column(w, p) * C;
      const float* block = w.values + p * R * C;
      for (int i = 0; i < R; ++i)
        for (int j = 0; j < C; ++j) acc[i][j] += block[i * C + j] * xs[j];
    }
    for (int i = 0; i < R; ++i) {
      float sum = 0.0f;
      for (int j = 0; j < C; ++j) sum += acc[i][j];
      y[(br * R + i) * ldy] = finish(sum, br * R + i, e);
    }
  }
}

// ---------------------------------------------------------------- dispatch

// How batch 1 fetches x[col]: MINIDL_SPMV=gathers|loads|panels overrides the
// choices below (for benchmarks: tools/bench/compare_builds.py --a-env); unset
// or empty leaves them to the CPU and the matrix, anything else is refused.
// Read once: a product of a few microseconds should not scan the environment.
enum class Fetch { automatic, gathers, loads, panels };

Fetch fetch_override() {
  static const Fetch fetch = [] {
    const char* env = std::getenv("MINIDL_SPMV");
    if (env == nullptr || *env == '\0') return Fetch::automatic;
    const std::string e = env;
    if (e == "gathers") return Fetch::gathers;
    if (e == "loads") return Fetch::loads;
    if (e == "panels") return Fetch::panels;
    throw Error("MINIDL_SPMV='" + e + "' is not gathers, loads or panels");
  }();
  return fetch;
}

// Whether batch 1 gathers x with the gather instruction (Intel) or with scalar
// loads (AMD, and anything else): ByLoads says why.
bool gathers_pay() {
  const Fetch fetch = fetch_override();
  if (fetch == Fetch::automatic) return cpu_features().vendor == "GenuineIntel";
  return fetch == Fetch::gathers;
}

SpmmKernel best_kernel(const SparseMatrixArg& w) {
  switch (cpu_path()) {
    case CpuPath::avx512:
      // w carries the panels where they pay (spmv_panels_pay) or were forced.
      if (w.is_csr() && (w.panels || fetch_override() == Fetch::panels)) return SpmmKernel::avx512_panels;
      return gathers_pay() ? SpmmKernel::avx512 : SpmmKernel::avx512_loads;
    case CpuPath::avx2:
      if (!w.is_csr()) return SpmmKernel::reference;
      return gathers_pay() ? SpmmKernel::avx2 : SpmmKernel::avx2_loads;
    case CpuPath::generic: break;
  }
  return SpmmKernel::reference;
}

// Panels or loads at batch 1. Measured on the Zen 5 VM over 80 matrices
// (docs/benchmarks.md, "Panels or loads"), per core: the loads take 0.34 ns a
// non-zero and 6.8 ns a row (its horizontal sum, epilogue and store); the
// panels 2.1 ns a step (sixteen slots, padding included) and 2.0 ns a slice's
// panel (two loads of x, a step count). In units of a non-zero's load, rounded:
//     loads ≈ nnz + 20 · rows        panels ≈ 6 · (steps + slice_panels)
// so the padding decides: past ~90% sparsity a row holds about three non-zeros
// in a 32-column panel and the longest of sixteen rows twice that.
// A layout of more than about 2 MiB a thread streams from L3 or memory, and
// there bytes decide: the panels keep winning while they are within 1.4× CSR's
// bytes (padding under about 1.7, ~80% sparsity) and lose up to 2.8× at 99% on
// 4096² (both at ~40 GB/s). In two sweeps of 80 matrices the rule's pick was
// within 1–2% of the faster kernel (geometric mean); always the panels, 7%,
// and at worst 2–2.8× (tools/bench/spmv_fit.py refits it on another CPU).
constexpr int64_t kPanelCacheBytes = int64_t{2} << 20;  // a thread's share

}  // namespace

bool spmv_panels_pay(const PanelPlan& p) {
  switch (fetch_override()) {
    case Fetch::panels:
      return true;
    case Fetch::gathers:
    case Fetch::loads:
      return false;
    case Fetch::automatic:
      break;
  }
  if (p.panel_bytes > kPanelCacheBytes * max_threads()) return 5 * p.panel_bytes <= 7 * p.csr_bytes;
  return 6 * (p.steps + p.slice_panels) < p.nnz + 20 * p.rows;
}

namespace {

bool is_avx512(SpmmKernel k) {
  return k == SpmmKernel::avx512 || k == SpmmKernel::avx512_loads || k == SpmmKernel::avx512_panels;
}

// The block shapes the AVX-512 BSR kernels are built for, and one call of
// `body.template operator()<R, C>()` for the one w has.
template <class Body>
bool with_block_shape(const SparseMatrixArg& w, Body&& body) {
  const int64_t r = w.block_rows, c = w.block_cols;
  if (r == 1 && c == 4) return body.template operator()<1, 4>(), true;
  if (r == 4 && c == 1) return body.template operator()<4, 1>(), true;
  if (r == 4 && c == 4) return body.template operator()<4, 4>(), true;
  if (r == 8 && c == 8) return body.template operator()<8, 8>(), true;
  if (r == 16 && c == 16) return body.template operator()<16, 16>(), true;
  return false;
}

// body(col) with w's column indices as they are stored: uint16_t or int32_t.
template <class Body>
void with_columns(const SparseMatrixArg& w, Body&& body) {
  if (w.index16)
    body(static_cast<const uint16_t*>(w.col_index));
  else
    body(static_cast<const int32_t*>(w.col_index));
}

bool avx512_block_shape(const SparseMatrixArg& w) {
  return w.is_csr() || with_block_shape(w, []<int, int>() {});
}

// The product over block rows [br0, br1), on this thread.
void spmm_rows(SpmmKernel k, const SparseMatrixArg& w, const TensorArg& B, const TensorArg& C,
               const GemmEpilogue& e, int64_t br0, int64_t br1) {
  const float* b = B.ptr<float>();
  float* c = C.ptr<float>();
  const int64_t n = B.shape[1], ldb = B.strides[0], ldc = C.strides[0];
  if (n == 1) {
    // B is a column, contiguous (spmm copied it where it was not).
    if (k == SpmmKernel::avx512_panels) {
      // This thread's rows, [br0, br1), rounded to whole slices: the rounded
      // ranges of consecutive threads still meet, so every slice is done once.
      const int64_t L = PanelMatrixArg::kPanelLanes;
      spmv_panels_avx512(*w.panels, b, c, ldc, (br0 + L - 1) / L, (br1 + L - 1) / L, e);
    } else if (w.is_csr()) {
      with_columns(w, [&](auto* col) {
        if (k == SpmmKernel::avx512)
          csr_spmv_avx512(w, col, b, c, ldc, br0, br1, e);
        else if (k == SpmmKernel::avx2)
          csr_spmv8<ByGather>(w, col, b, c, ldc, br0, br1, e);
        else
          csr_spmv8<ByLoads>(w, col, b, c, ldc, br0, br1, e);
      });
    } else {
      with_block_shape(w, [&]<int R, int Cb>() { bsr_spmv_avx512<R, Cb>(w, b, c, ldc, br0, br1, e); });
    }
    return;
  }
  if (w.is_csr() && n >= 2 && n <= 8) {
    with_columns(w, [&](auto* col) {
      if (n == 2)
        csr_tile_narrow<2, false>(w, col, b, ldb, c, ldc, br0, br1, e);
      else if (n == 3)
        csr_tile_narrow<4, true>(w, col, b, ldb, c, ldc, br0, br1, e, first_lanes<4>(3));
      else if (n == 4)
        csr_tile_narrow<4, false>(w, col, b, ldb, c, ldc, br0, br1, e);
      else if (n < 8)
        csr_tile_narrow<8, true>(w, col, b, ldb, c, ldc, br0, br1, e, first_lanes<8>(static_cast<int>(n)));
      else
        csr_tile_narrow<8, false>(w, col, b, ldb, c, ldc, br0, br1, e);
    });
    return;
  }
  const int64_t tile = is_avx512(k) ? 64 : 32, lanes = tile / 4;
  for (int64_t j0 = 0; j0 < n; j0 += tile) {
    const int64_t width = std::min(tile, n - j0);
    // Vectors per row: 1, 2 or 4, so a narrow batch does not pay for four.
    const int vectors = width <= lanes ? 1 : width <= 2 * lanes ? 2 : 4;
    auto csr = [&](auto* col) {
      auto run = [&]<int V>() {
        if (is_avx512(k))
          csr_tile_avx512<V>(w, col, b, ldb, c, ldc, j0, width, br0, br1, e);
        else
          csr_tile_avx2<V>(w, col, b, ldb, c, ldc, j0, width, br0, br1, e);
      };
      if (vectors == 1)
        run.template operator()<1>();
      else if (vectors == 2)
        run.template operator()<2>();
      else
        run.template operator()<4>();
    };
    if (w.is_csr()) {
      with_columns(w, csr);
    } else {
      with_block_shape(w, [&]<int R, int Cb>() {
        constexpr int G = R == 1 ? 1 : 4;  // rows of a block per pass: 4·V accumulators
        if (vectors == 1) bsr_tile_avx512<G, Cb, 1>(w, b, ldb, c, ldc, j0, width, br0, br1, e);
        else if (vectors == 2) bsr_tile_avx512<G, Cb, 2>(w, b, ldb, c, ldc, j0, width, br0, br1, e);
        else bsr_tile_avx512<G, Cb, 4>(w, b, ldb, c, ldc, j0, width, br0, br1, e);
      });
    }
  }
}

}  // namespace

bool spmm_kernel_supported(SpmmKernel k, const SparseMatrixArg& w) {
  switch (k) {
    case SpmmKernel::best:
    case SpmmKernel::reference: return true;
    case SpmmKernel::avx2:
    case SpmmKernel::avx2_loads:
      return w.is_csr() && cpu_path_supported(CpuPath::avx2);
    case SpmmKernel::avx512:
    case SpmmKernel::avx512_loads:
      return avx512_block_shape(w) && cpu_path_supported(CpuPath::avx512);
    case SpmmKernel::avx512_panels:
      return w.is_csr() && cpu_path_supported(CpuPath::avx512);
  }
  return false;
}

const char* spmm_kernel_name(SpmmKernel k, const SparseMatrixArg& w) {
  switch (k) {
    case SpmmKernel::best:
      // A CSR matrix without its panels yet: sparse_linear asks for them at batch 1.
      if (w.is_csr() && !w.panels && cpu_path() == CpuPath::avx512 && fetch_override() == Fetch::automatic)
        return gathers_pay() ? "avx512 (64 columns; batch 1 by panels where they pay, else by gathers)"
                             : "avx512 (64 columns; batch 1 by panels where they pay, else by loads)";
      return spmm_kernel_name(best_kernel(w), w);
    case SpmmKernel::reference: return "reference";
    case SpmmKernel::avx2:
      return "avx2 (32 columns; batch 1 by gathers)";
    case SpmmKernel::avx512:
      return "avx512 (64 columns; batch 1 by gathers)";
    case SpmmKernel::avx2_loads:
      return "avx2 (32 columns; batch 1 by loads)";
    case SpmmKernel::avx512_loads:
      return "avx512 (64 columns; batch 1 by loads)";
    case SpmmKernel::avx512_panels:
      return "avx512 (64 columns; batch 1 by panels)";
  }
  return "?";
}

void spmm(const SparseMatrixArg& w, const TensorArg& B, const TensorArg& C, const GemmEpilogue& e, SpmmKernel k) {
  // A single column's column stride is never read (a row's transpose has any).
  auto unit_columns = [](const TensorArg& t) { return t.shape[1] == 1 || t.strides[1] == 1; };
  if (B.dtype != DType::f32 || C.dtype != DType::f32 || !unit_columns(B) || !unit_columns(C))
    throw Error("spmm: B and C must be f32 with unit column stride");
  if (e.bias && !e.bias_per_row) throw Error("spmm: the bias is one value per row of C");
  if (k == SpmmKernel::best) k = best_kernel(w);
  if (!spmm_kernel_supported(k, w))
    throw Error(std::string("spmm: this CPU cannot run the ") + spmm_kernel_name(k, w) + " kernel for " +
                std::to_string(w.block_rows) + "x" + std::to_string(w.block_cols) + " blocks");
  if (k == SpmmKernel::avx512_panels && B.shape[1] == 1 && !w.panels)
    throw Error(
        "spmm: the avx512_panels kernel needs the matrix's panel layout at batch 1 (SparseMatrix::arg with "
        "PanelRequest::always)");
  if (w.rows == 0 || B.shape[1] == 0) return;
  if (k == SpmmKernel::reference) {
    spmm_reference(w, B, C, e);
    return;
  }
  // Batch 1: the kernels read B's column contiguous. Where it is ldb apart it
  // is copied here, once for every thread.
  TensorArg b = B;
  std::vector<float> column;
  if (B.shape[1] == 1 && B.strides[0] != 1) {
    column.resize(static_cast<size_t>(w.cols));
    for (int64_t j = 0; j < w.cols; ++j) column[j] = B.ptr<float>()[j * B.strides[0]];
    b.data = column.data();
    b.strides[0] = 1;
  }
  const int64_t block_rows = w.rows / w.block_rows;
  const int64_t work = static_cast<int64_t>(w.row_ptr[block_rows]) * w.block_rows * w.block_cols * B.shape[1];
  const bool parallel = work >= kSpmmParallelWork && !in_parallel() && max_threads() > 1;
  maybe_parallel(parallel, [&] {
    const auto [br0, br1] = balanced_rows(w, block_rows, thread_index(), team_size());
    spmm_rows(k, w, b, C, e, br0, br1);
  });
}

}  // namespace minidl::cpu
