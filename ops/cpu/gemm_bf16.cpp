// ops/cpu/gemm_bf16.cpp — the bf16 GEMM of a linear layer: bf16 inputs, f32 sums.
//
//   y (M, N) = act( x (M, K) · W (N, K)ᵀ + bias (N) ),   x, W bf16; sums in f32; y f32 or bf16
//
// bf16 is the top half of an f32: the same range, 8 bits of mantissa. Products
// of two bf16 are exact in f32, so a bf16 GEMM is an f32 GEMM that reads half
// the bytes — and, on CPUs with AVX512_BF16, does twice the multiply-adds per
// instruction: vdpbf16ps multiplies the two bf16 of each 32-bit lane of x by
// the two of w and adds both products to the lane's f32 sum.
//
// Layout (gemm_bf16_pack_weight), the int8 GEMM's with pairs instead of
// quadruples: K padded to even, N to panels of 16 columns; panel p holds, for
// each pair g of k, columns 16p .. 16p+15's W[n, 2g], W[n, 2g+1] — 64 bytes, one
// zmm register. A tile of MR rows × 16·NV columns of f32 sums stays in
// registers; per pair it broadcasts 4 bytes of each row of x against NV loads.
//
// Kernels, tested against the f64 product (tests/test_bf16.cpp):
//   amx           tdpbf16ps on the AMX tiles (Sapphire Rapids and later), 16-row
//                 blocks; the rows left over on one of the next two.
//   avx512-bf16   vdpbf16ps (Zen 4, Zen 5, Sapphire Rapids).
//   avx512-cvt    AVX-512 without BF16: each pair widened to two f32 (a bf16 is
//                 an f32 with its low 16 bits cleared: a shift or a mask) and two FMAs.
//   reference     scalar loops over the same layout.
// Both vector kernels round each pair's two products once each in f32 sums; the
// difference from the f64 product is rounding only (≈ K · 2⁻²⁴ relative).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "ops/cpu/amx.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"
#include "ops/cpu/tile_loop.h"

#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's _mm512_undefined_* (see qgemm.cpp)
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace minidl::cpu {

namespace {
int64_t pairs_of(int64_t K) { return (K + 1) / 2; }
// Element offset of W[n, k] in the packed layout.
int64_t packed_offset(int64_t n, int64_t k, int64_t K) {
  return ((n / kPanel * pairs_of(K) + k / 2) * kPanel + n % kPanel) * 2 + k % 2;
}
float to_float(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// 16 floats rounded to bf16 as bf16::from_float does (to nearest even; NaN stays
// NaN, quieted): the bits in the low half of each 32-bit lane.
__attribute__((target("avx512f"))) inline __m512i round_to_bf16_512(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i rounded = _mm512_srli_epi32(
      _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                           _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)))),
      16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  return _mm512_mask_or_epi32(rounded, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}
// gemm_bf16_pack_columns' whole panels with AVX-512: rows 2g and 2g + 1 of B,
// 16 columns each, rounded, the odd row's bits shifted into the high halves.
__attribute__((target("avx512f"))) void pack_column_pair_512(const float* even, const float* odd, uint16_t* dst) {
  const __m512i e = round_to_bf16_512(_mm512_loadu_ps(even)), o = round_to_bf16_512(_mm512_loadu_ps(odd));
  _mm512_storeu_si512(dst, _mm512_or_si512(e, _mm512_slli_epi32(o, 16)));
}
}  // namespace

int64_t gemm_bf16_packed_elements(int64_t N, int64_t K) { return panels_of(N) * pairs_of(K) * 2 * kPanel; }

void gemm_bf16_pack_weight(const uint16_t* w, int64_t ldw, int64_t N, int64_t K, uint16_t* packed) {
  const int64_t G = pairs_of(K), P = panels_of(N);
  // Each row of W is read once, contiguously, and scattered 64 bytes apart into its panel.
  parallel_for(N * K >= 4 * kParallelGrain, P, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      uint16_t* panel = packed + p * G * 2 * kPanel;
      for (int64_t j = 0; j < kPanel; ++j) {
        const int64_t n = p * kPanel + j;
        uint16_t* dst = panel + 2 * j;
        if (n >= N) {  // padding columns: +0.0
          for (int64_t g = 0; g < G; ++g) dst[g * 2 * kPanel] = dst[g * 2 * kPanel + 1] = 0;
          continue;
        }
        const uint16_t* row = w + n * ldw;
        for (int64_t g = 0; g < K / 2; ++g) dst[g * 2 * kPanel] = row[2 * g], dst[g * 2 * kPanel + 1] = row[2 * g + 1];
        if (K % 2) dst[(G - 1) * 2 * kPanel] = row[K - 1], dst[(G - 1) * 2 * kPanel + 1] = 0;
      }
    }
  });
}

void gemm_bf16_pack_columns(const float* b, int64_t ldb, int64_t K, int64_t N, uint16_t* packed) {
  const int64_t G = pairs_of(K), P = panels_of(N);
  // A 32-bit lane of the layout holds (k, k + 1) of one column: rows 2g and 2g + 1
  // of B, read 16 columns at a time, rounded, and joined low half first (x86 is
  // little-endian). Whole panels take AVX-512 where the CPU path has it (GCC
  // leaves the scalar loop's rounding unvectorised: a quarter of a bf16
  // convolution's time).
  const bool avx512 = cpu_path() == CpuPath::avx512;
  auto lane = [](float even, float odd) {
    return static_cast<uint32_t>(bf16::from_float(even).bits) | static_cast<uint32_t>(bf16::from_float(odd).bits) << 16;
  };
  parallel_for(N * K >= 4 * kParallelGrain, P, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n0 = p * kPanel, width = std::min(kPanel, N - n0);
      for (int64_t g = 0; g < G; ++g) {
        uint16_t* dst = packed + (p * G + g) * 2 * kPanel;
        uint32_t lanes[kPanel];
        const float* even = b + 2 * g * ldb + n0;
        const float* odd = even + ldb;
        if (width == kPanel && 2 * g + 1 < K) {
          if (avx512) {
            pack_column_pair_512(even, odd, dst);
            continue;
          }
          for (int64_t j = 0; j < kPanel; ++j) lanes[j] = lane(even[j], odd[j]);
        } else {  // the last columns, or the odd last k: +0.0 beyond B
          for (int64_t j = 0; j < kPanel; ++j) lanes[j] = j < width ? lane(even[j], 2 * g + 1 < K ? odd[j] : 0.0f) : 0;
        }
        std::memcpy(dst, lanes, sizeof lanes);
      }
    }
  });
}

namespace {

float finish(float acc, int64_t n, const Bf16GemmArgs& a) {
  const float v = acc + (a.bias ? a.bias[n] : 0.0f);
  return a.relu ? std::max(v, 0.0f) : v;
}
void store(const Bf16GemmArgs& a, int64_t m, int64_t n, float v) {
  if (a.y_bf16)
    a.y_bf16[m * a.ldy + n] = bf16::from_float(v).bits;
  else
    a.y[m * a.ldy + n] = v;
}

void gemm_bf16_reference(const Bf16GemmArgs& a) {
  parallel_for(a.M * a.N * a.K > 8 * kParallelGrain, a.M, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m)
      for (int64_t n = 0; n < a.N; ++n) {
        float acc = 0;
        for (int64_t k = 0; k < a.K; ++k)
          acc += to_float(a.x[m * a.ldx + k]) * to_float(a.w_packed[packed_offset(n, k, a.K)]);
        store(a, m, n, finish(acc, n, a));
      }
  });
}

// ---------------------------------------------------------------- small M: the weight as stored

// A few rows of x (an eager layer at batch 1): packing W would copy all of it
// to use each element at most kBf16SmallM times, so this kernel reads W as
// stored, (N, K) rows. x's rows are widened to f32 once; W's elements as they
// are read (a shift), four rows of W at a time (lane_dot4, as the f32 GEMV
// does). The sums are f32 and the output is rounded once, as in the packed
// kernels; only the order of the additions differs. Threads split the columns,
// each reading its own rows of W. Though the weight is half the bytes of an
// f32 one, at batch 1 this runs no faster than the f32 GEMV on the Zen 5 VM
// (16 µs at 784 → 512): the widening costs what the bytes save.
void gemm_bf16_small_m(const Bf16GemmArgs& a) {
  const int64_t M = a.M, N = a.N, K = a.K;
  std::vector<float> xf(static_cast<size_t>(M * K));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) xf[m * K + k] = to_float(a.x[m * a.ldx + k]);
  auto widen = [](uint16_t bits) { return to_float(bits); };
  parallel_for(M * N * K >= kGemvParallelMacs, N, [&](int64_t n0, int64_t n1) {
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4)
      for (int64_t m = 0; m < M; ++m) {
        const uint16_t* w = a.w + n * a.ldw;
        const std::array<float, 4> s =
            lane_dot4(K, xf.data() + m * K, w, w + a.ldw, w + 2 * a.ldw, w + 3 * a.ldw, widen);
        for (int r = 0; r < 4; ++r) store(a, m, n + r, finish(s[r], n + r, a));
      }
    for (; n < n1; ++n)
      for (int64_t m = 0; m < M; ++m) {
        const float* x = xf.data() + m * K;
        const uint16_t* w = a.w + n * a.ldw;
        store(a, m, n, finish(lane_sum<float>(K, [x, w](int64_t k) { return x[k] * to_float(w[k]); }), n, a));
      }
  });
}

// x's pair at (row, pair g): 4 bytes, as the dword every lane multiplies.
inline int32_t x_pair(const Bf16GemmArgs& a, int64_t row, int64_t g) {
  // The last pair of an odd K reads one element past the row: its weight is 0,
  // but the element may not exist, so it is taken alone.
  if (2 * g + 1 >= a.K && a.K % 2) return a.x[row * a.ldx + 2 * g];
  int32_t v;
  std::memcpy(&v, a.x + row * a.ldx + 2 * g, 4);
  return v;
}

// acc += the pair products, per lane: vdpbf16ps in place (as qgemm.cpp's dpbusd,
// in assembly: GCC 12 doubles the accumulator registers around the intrinsic).
__attribute__((target("avx512f"))) inline void dpbf16(__m512& acc, __m512i x, __m512i w) {
  __asm__("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
}

struct Bf16Dot {
  __attribute__((target("avx512f,avx512bw"))) static void madd(__m512& acc, __m512i x, __m512i w) { dpbf16(acc, x, w); }
};
struct CvtDot {
  // The even element of each pair is the low half of the lane, the odd the high half.
  __attribute__((target("avx512f,avx512bw"))) static void madd(__m512& acc, __m512i x, __m512i w) {
    const __m512i hi = _mm512_set1_epi32(static_cast<int32_t>(0xffff0000u));
    acc = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(x, 16)), _mm512_castsi512_ps(_mm512_slli_epi32(w, 16)),
                          acc);
    acc = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(x, hi)), _mm512_castsi512_ps(_mm512_and_si512(w, hi)),
                          acc);
  }
};

// The epilogue of one panel of 16 columns, one row of sums at a time.
struct PanelEpilogue {
  int64_t n0;
  __mmask16 mask;
  __m512 bias;
  bool relu;

  __attribute__((target("avx512f"))) PanelEpilogue(const Bf16GemmArgs& a, int64_t panel)
      : n0(panel * kPanel), relu(a.relu) {
    mask = a.N - n0 >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (a.N - n0)) - 1);
    bias = a.bias ? _mm512_maskz_loadu_ps(mask, a.bias + n0) : _mm512_setzero_ps();
  }
  // y[m, n0 ..] = act(acc + bias), in f32 or rounded to bf16.
  __attribute__((target("avx512f,avx512bw,avx512vl"))) void store(const Bf16GemmArgs& a, int64_t m, __m512 acc) const {
    __m512 y = _mm512_add_ps(acc, bias);
    if (relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
    if (!a.y_bf16) return _mm512_mask_storeu_ps(a.y + m * a.ldy + n0, mask, y);
    _mm256_mask_storeu_epi16(a.y_bf16 + m * a.ldy + n0, mask, _mm512_cvtepi32_epi16(round_to_bf16_512(y)));
  }
};

template <class Dot, int MR, int NV>
__attribute__((target("avx512f,avx512bw,avx512vl"))) void tile_512(const Bf16GemmArgs& a, int64_t m0, int64_t p0) {
  const int64_t G = pairs_of(a.K);
  const uint16_t* w = a.w_packed + p0 * G * 2 * kPanel;
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t g = 0; g < G; ++g) {
    __m512i b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_si512(w + (v * G + g) * 2 * kPanel);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512i xi = _mm512_set1_epi32(x_pair(a, m0 + i, g));
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) Dot::madd(acc[i][v], xi, b[v]);
    }
  }
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    const PanelEpilogue e(a, p0 + v);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) e.store(a, m0 + i, acc[i][v]);
  }
}

template <class Dot, int MR>
void tile_rows(const Bf16GemmArgs& a, int64_t m0, int64_t p0, int64_t nv) {
  for (; nv >= 8 && MR <= 2; nv -= 8, p0 += 8) tile_512<Dot, MR, (MR <= 2 ? 8 : 4)>(a, m0, p0);
  for (; nv >= 4; nv -= 4, p0 += 4) tile_512<Dot, MR, 4>(a, m0, p0);
  switch (nv) {
    case 3:
      return tile_512<Dot, MR, 3>(a, m0, p0);
    case 2:
      return tile_512<Dot, MR, 2>(a, m0, p0);
    case 1:
      return tile_512<Dot, MR, 1>(a, m0, p0);
  }
}

template <class Dot>
void gemm_bf16_512(const Bf16GemmArgs& a) {
  for_each_tile(a.M, panels_of(a.N), a.M * a.N * a.K, 98304, 6, panels_per_tile(a.M, panels_of(a.N)),
                [&](int64_t rows, int64_t m0, int64_t p0, int64_t panels) {
                  switch (rows) {
                    case 6:
                      return tile_rows<Dot, 6>(a, m0, p0, panels);
                    case 5:
                      return tile_rows<Dot, 5>(a, m0, p0, panels);
                    case 4:
                      return tile_rows<Dot, 4>(a, m0, p0, panels);
                    case 3:
                      return tile_rows<Dot, 3>(a, m0, p0, panels);
                    case 2:
                      return tile_rows<Dot, 2>(a, m0, p0, panels);
                    case 1:
                      return tile_rows<Dot, 1>(a, m0, p0, panels);
                  }
                });
}

// ---------------------------------------------------------------- AMX

// As qgemm.cpp's tile_amx, with tdpbf16ps: C tiles MT × NT of 16 × 16 f32 sums;
// the tiles take K in chunks of 32 (16 pairs: 64 bytes of each row of x, 16 ×
// 64 bytes of a panel), and the pairs after the last whole chunk, with the
// epilogue, run on vdpbf16ps over the stored sums. (tdpbf16ps treats denormal
// inputs as zero; the difference is below the f32 sums' rounding.)
template <int MT, int NT>
__attribute__((target("amx-tile,amx-int8,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16"))) void tile_amx(
    const Bf16GemmArgs& a, int64_t m0, int64_t p0) {
  const int64_t G = pairs_of(a.K), chunks = a.K / 32;
  const uint16_t* w = a.w_packed + p0 * G * 2 * kPanel;
  const uint16_t* x = a.x + m0 * a.ldx;
  const int64_t stride = 2 * a.ldx;  // bytes
  alignas(64) float sums[4][16 * 16];
  amx::multiply_block<true, MT, NT>(reinterpret_cast<const uint8_t*>(x), stride, reinterpret_cast<const uint8_t*>(w),
                                    G * 2 * kPanel * 2, chunks, sums);

  for (int j = 0; j < NT; ++j) {
    const PanelEpilogue e(a, p0 + j);
    const uint16_t* panel = w + j * G * 2 * kPanel;
    for (int i = 0; i < MT; ++i)
      for (int r = 0; r < 16; ++r) {
        const int64_t m = m0 + 16 * i + r;
        __m512 acc = _mm512_load_ps(sums[2 * i + j] + 16 * r);
        for (int64_t g = 16 * chunks; g < G; ++g)
          dpbf16(acc, _mm512_set1_epi32(x_pair(a, m, g)), _mm512_loadu_si512(panel + g * 2 * kPanel));
        e.store(a, m, acc);
      }
  }
}

Bf16GemmKernel vector_kernel();
void run_kernel(const Bf16GemmArgs& a, Bf16GemmKernel kernel);

// Whole blocks of 16 rows on the tiles; the rows left over (all of them below
// batch 16) on the best AVX-512 kernel.
void gemm_bf16_amx(const Bf16GemmArgs& a) {
  const int64_t M16 = a.M / 16 * 16;
  if (M16 > 0)
    for_each_tile<amx::Tiles>(M16, panels_of(a.N), M16 * a.N * a.K, 98304, 32, 2,
                              [&](int64_t rows, int64_t m0, int64_t p0, int64_t panels) {
                                if (rows == 32)
                                  return panels == 2 ? tile_amx<2, 2>(a, m0, p0) : tile_amx<2, 1>(a, m0, p0);
                                return panels == 2 ? tile_amx<1, 2>(a, m0, p0) : tile_amx<1, 1>(a, m0, p0);
                              });
  if (M16 == a.M) return;
  Bf16GemmArgs rest = a;
  rest.M = a.M - M16, rest.x = a.x + M16 * a.ldx;
  if (a.y) rest.y = a.y + M16 * a.ldy;
  if (a.y_bf16) rest.y_bf16 = a.y_bf16 + M16 * a.ldy;
  run_kernel(rest, vector_kernel());
}

// The kernel for rows the tiles do not take. Which is faster depends on the
// core, not only on its features: on the Sapphire/Emerald Rapids machines here
// vdpbf16ps issues once per two cycles while FMAs issue twice per cycle
// (measured: 1.3 G against 5.4 G instructions/s on one core), so its 32
// multiply-adds per instruction lose to two FMAs of 16 and the converting
// kernel is faster (1.23x on the mlp at batch 128). Intel CPUs therefore take
// the converting kernel, others vdpbf16ps (Zen 4 runs it at the FMA rate, per
// AMD's documentation — not yet measured here).
Bf16GemmKernel vector_kernel() {
  if (cpu_path() != CpuPath::avx512) return Bf16GemmKernel::reference;
  const bool intel = cpu_features().vendor == "GenuineIntel";
  return cpu_features().avx512_bf16 && !intel ? Bf16GemmKernel::avx512_bf16 : Bf16GemmKernel::avx512_cvt;
}

// The tiles where the CPU has them, else vector_kernel().
// MINIDL_BF16_GEMM=amx|bf16|cvt|reference overrides, for tests and benchmarks.
Bf16GemmKernel best_bf16_kernel() {
  if (const char* env = std::getenv("MINIDL_BF16_GEMM"); env && *env) {
    const std::string e = env;
    const Bf16GemmKernel k = e == "amx"    ? Bf16GemmKernel::amx
                             : e == "bf16" ? Bf16GemmKernel::avx512_bf16
                             : e == "cvt"  ? Bf16GemmKernel::avx512_cvt
                             : e == "reference"
                                 ? Bf16GemmKernel::reference
                                 : throw Error("MINIDL_BF16_GEMM='" + e + "' is not amx, bf16, cvt or reference");
    return k;
  }
  if (gemm_bf16_kernel_supported(Bf16GemmKernel::amx)) return Bf16GemmKernel::amx;
  return vector_kernel();
}

void run_kernel(const Bf16GemmArgs& a, Bf16GemmKernel kernel) {
  switch (kernel) {
    case Bf16GemmKernel::amx:
      return gemm_bf16_amx(a);
    case Bf16GemmKernel::avx512_bf16:
      return gemm_bf16_512<Bf16Dot>(a);
    case Bf16GemmKernel::avx512_cvt:
      return gemm_bf16_512<CvtDot>(a);
    case Bf16GemmKernel::small_m:
      return gemm_bf16_small_m(a);
    default:
      return gemm_bf16_reference(a);
  }
}
}  // namespace

bool gemm_bf16_kernel_supported(Bf16GemmKernel k) {
  switch (k) {
    case Bf16GemmKernel::best:
    case Bf16GemmKernel::reference:
    case Bf16GemmKernel::small_m:
      return true;
    case Bf16GemmKernel::avx512_cvt:
      return cpu_path_supported(CpuPath::avx512);
    case Bf16GemmKernel::avx512_bf16:
      return cpu_path_supported(CpuPath::avx512) && cpu_features().avx512_bf16;
    case Bf16GemmKernel::amx:
      return cpu_path_supported(CpuPath::avx512) && cpu_features().avx512_bf16 && amx_usable();
  }
  return false;
}

const char* gemm_bf16_kernel_name(Bf16GemmKernel k) {
  switch (k) {
    case Bf16GemmKernel::best:
      return gemm_bf16_kernel_name(best_bf16_kernel());
    case Bf16GemmKernel::reference:
      return "bf16-reference (converting, scalar)";
    case Bf16GemmKernel::avx512_cvt:
      return "bf16-avx512-cvt (widen to f32, FMA, 6x64)";
    case Bf16GemmKernel::avx512_bf16:
      return "bf16-avx512-bf16 (vdpbf16ps, 6x64)";
    case Bf16GemmKernel::amx:
      return "bf16-amx (tdpbf16ps tiles, 32x32; under 16 rows avx512)";
    case Bf16GemmKernel::small_m:
      return "bf16-small-M (weight as stored, widened to f32)";
  }
  return "?";
}

bool gemm_bf16_is_native() {
  const CpuFeatures& f = cpu_features();
  return cpu_path() == CpuPath::avx512 && (f.avx512_bf16 || amx_usable());
}

bool gemm_bf16_outruns_f32() {
  const Bf16GemmKernel k = best_bf16_kernel();
  return k == Bf16GemmKernel::amx || k == Bf16GemmKernel::avx512_bf16;
}

void gemm_bf16(const Bf16GemmArgs& a, Bf16GemmKernel kernel) {
  if (a.M == 0 || a.N == 0) return;
  if (kernel == Bf16GemmKernel::best) kernel = best_bf16_kernel();
  if (!gemm_bf16_kernel_supported(kernel))
    throw Error(std::string("gemm_bf16: this CPU (") + cpu_features().model + ") cannot run " +
                gemm_bf16_kernel_name(kernel));
  if ((kernel == Bf16GemmKernel::small_m ? a.w : a.w_packed) == nullptr)
    throw Error(
        std::string("gemm_bf16: ") + gemm_bf16_kernel_name(kernel) + " needs the weight " +
        (kernel == Bf16GemmKernel::small_m ? "as stored (Bf16GemmArgs::w)" : "packed (Bf16GemmArgs::w_packed)"));
  run_kernel(a, kernel);
}

}  // namespace minidl::cpu
