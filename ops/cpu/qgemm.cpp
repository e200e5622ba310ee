// ops/cpu/qgemm.cpp — the int8 GEMM of dynamic quantization, and the
// quantization of activations that feeds it.
//
//   y (M, N) f32 = act( sx·sw[n] · (Σ_k xq[m,k]·wq[n,k] − zx·Σ_k wq[n,k]) + bias[n] )
//
// x is quantized per call, per tensor, to unsigned bytes with a zero point
// (x ≈ sx·(xq − zx)): after a ReLU every activation is ≥ 0 and all 256 levels
// go to the values that occur. The weight was quantized ahead of time,
// symmetrically (w ≈ sw[n]·wq, wq in [−127, 127]), so it needs no zero point;
// the activation's zero point comes out of the sum as zx times the weight row's
// sum, precomputed at packing. The integer part is exact, so every kernel below
// gives bit-identical accumulators; the epilogue (subtract, convert, scale, add
// the bias, ReLU) runs on each tile while it is still in registers.
//
// The kernels, tested against each other (tests/test_quant.cpp):
//   reference   plain loops over the packed layout; the yardstick.
//   avx512-vnni vpdpbusd: each 32-bit lane multiplies 4 unsigned bytes of x by 4
//               signed bytes of w and adds the four products to its accumulator —
//               64 multiply-adds per instruction, 4× an f32 FMA.
//   avx-vnni    the same instruction on 256-bit registers.
//   avx2        no dot-product instruction: vpmaddubsw multiplies u8 by s8 and adds
//               pairs into 16-bit lanes, which saturate — 255·127·2 > 32767. So x
//               goes in as the signed x − 128 (|x − 128| ≤ 128; 128·127·2 fits),
//               multiplied through vpsignb/vpabsb, and the missing 128·Σw is added
//               back with the zero point: exact, like the others.
//
// Layout (qgemm_pack_weight): K is padded to a multiple of 4 (groups of 4 bytes,
// what one lane multiplies) and N to 16 columns per panel. Panel p holds, for
// each group g, columns 16p .. 16p+15's bytes wq[n, 4g .. 4g+3]: 64 bytes, one
// zmm register, read with stride 1. A micro-kernel keeps an MR × (16·NV) tile of
// accumulators in registers, broadcasts 4 bytes of each of its MR rows of x per
// group and loads NV vectors of the weight: MR·NV multiply-adds of 64 per NV
// loads. Threads split the (panel group × row block) tiles.
//
// Where a row of x lies is the tile's business alone (TileRows): at m·ldx, or
// on a QGemmRowGrid, so that a convolution's patches are read where they lie in
// the image (qconv.cpp) — the same kernels, with K taken in a few runs.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/check.h"
#include "core/error.h"
#include "ops/cpu/amx.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"
#include "ops/cpu/tile_loop.h"

// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*(), which its own
// -W(maybe-)uninitialized reports in every file that uses them; the value is never read.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace minidl::cpu {

namespace {
// About 48 K multiply-adds per thread before a second one pays (a region costs ~1.5 µs).
constexpr int64_t kParallelMacs = 196608;

int64_t groups_of(int64_t K) { return (K + 3) / 4; }

// Byte offset of w[n, k] in the packed layout.
int64_t packed_offset(int64_t n, int64_t k, int64_t K) {
  const int64_t p = n / kPanel, g = k / 4;
  return (p * groups_of(K) + g) * (4 * kPanel) + (n % kPanel) * 4 + k % 4;
}
}  // namespace

// ---------------------------------------------------------------- packing and quantizing

int64_t qgemm_packed_bytes(int64_t N, int64_t K) { return panels_of(N) * groups_of(K) * 4 * kPanel; }
int64_t qgemm_padded_k(int64_t K) { return groups_of(K) * 4; }

void qgemm_pack_weight(const int8_t* w, int64_t N, int64_t K, int8_t* packed, int32_t* row_sums) {
  std::memset(packed, 0, static_cast<size_t>(qgemm_packed_bytes(N, K)));  // padding multiplies as 0
  for (int64_t n = 0; n < N; ++n) {
    int32_t sum = 0;
    for (int64_t k = 0; k < K; ++k) {
      packed[packed_offset(n, k, K)] = w[n * K + k];
      sum += w[n * K + k];
    }
    row_sums[n] = sum;
  }
}

namespace {
// The range of one row: lo = min(lo, x), hi = max(hi, x); false when x holds NaN or ±inf.
bool row_range_scalar(const float* x, int64_t K, float& lo, float& hi) {
  bool finite = true;
  for (int64_t k = 0; k < K; ++k) {
    lo = std::min(lo, x[k]), hi = std::max(hi, x[k]);
    finite &= std::isfinite(x[k]);
  }
  return finite;
}

__attribute__((target("avx512f"))) bool row_range_avx512(const float* x, int64_t K, float& lo, float& hi) {
  __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  __mmask16 bad = 0;
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 m = K - k >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (K - k)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + k);
    vlo = _mm512_min_ps(vlo, v), vhi = _mm512_max_ps(vhi, v);
    // x − x is 0 for a finite x and NaN for NaN or ±inf.
    bad |= _mm512_cmp_ps_mask(_mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_NEQ_UQ);
  }
  lo = _mm512_reduce_min_ps(vlo), hi = _mm512_reduce_max_ps(vhi);
  return bad == 0;
}
}  // namespace

QuantParams choose_quant_params(const float* x, int64_t M, int64_t K, int64_t ldx) {
  // The range always holds 0, so zero (a ReLU's output, padding) is exact.
  struct Range {
    float lo = 0, hi = 0;
    bool finite = true;
  };
  const bool avx512 = cpu_path() == CpuPath::avx512;
  auto range_of_rows = [&](int64_t m0, int64_t m1) {
    Range r;
    for (int64_t m = m0; m < m1; ++m)
      r.finite =
          (avx512 ? row_range_avx512(x + m * ldx, K, r.lo, r.hi) : row_range_scalar(x + m * ldx, K, r.lo, r.hi)) &&
          r.finite;
    return r;
  };
  auto merge = [](Range a, Range b) { return Range{std::min(a.lo, b.lo), std::max(a.hi, b.hi), a.finite && b.finite}; };
  const Range r = parallel_reduce(M * K >= kParallelGrain, M, Range{}, range_of_rows, merge);
  if (!r.finite) throw Error("quantize: the input holds NaN or infinity; it has no int8 range");
  return quant_params_from_range(r.lo, r.hi);
}

namespace {
// q = clamp(round(x / s) + z, 0, 255), rounding half to even (the vector and
// scalar forms round alike: vcvtps2dq uses the same default mode as nearbyint).
void quantize_row_scalar(const float* x, int64_t K, float inv_scale, int32_t zero, uint8_t* out) {
  for (int64_t k = 0; k < K; ++k) out[k] = static_cast<uint8_t>(quantize_u8(x[k], inv_scale, zero));
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void quantize_row_avx512(const float* x, int64_t K,
                                                                              float inv_scale, int32_t zero,
                                                                              uint8_t* out) {
  const __m512 s = _mm512_set1_ps(inv_scale);
  const __m512i z = _mm512_set1_epi32(zero), lo = _mm512_setzero_si512(), hi = _mm512_set1_epi32(255);
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 m = K - k >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (K - k)) - 1);
    // Round first, then add the zero point, exactly as the scalar form does.
    __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + k), s)), z);
    q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
    _mm_mask_storeu_epi8(out + k, m, _mm512_cvtepi32_epi8(q));
  }
}
}  // namespace

void quantize_span_u8(const float* x, int64_t n, QuantParams q, uint8_t* out) {
  if (cpu_path() == CpuPath::avx512)
    quantize_row_avx512(x, n, 1.0f / q.scale, q.zero_point, out);
  else
    quantize_row_scalar(x, n, 1.0f / q.scale, q.zero_point, out);
}

void quantize_rows_u8(const float* x, int64_t M, int64_t K, int64_t ldx, QuantParams q, uint8_t* out, int64_t ldo) {
  parallel_for(M * K >= kParallelGrain, M, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      quantize_span_u8(x + m * ldx, K, q, out + m * ldo);
      // The padding up to a group of 4 holds the zero point: it meets zero weights.
      for (int64_t k = K; k < qgemm_padded_k(K); ++k) out[m * ldo + k] = static_cast<uint8_t>(q.zero_point);
    }
  });
}

// ---------------------------------------------------------------- rows of x

namespace {
// Where row m of x starts (QGemmArgs::x_grid).
inline const uint8_t* x_row(const QGemmArgs& a, int64_t m) {
  const QGemmRowGrid& g = a.x_grid;
  if (g.cols == 0) return a.x + m * a.ldx;
  const int64_t line = m / g.cols;  // (b, r) as one index
  return a.x + line / g.rows * g.block_stride + line % g.rows * g.row_stride + m % g.cols * a.ldx;
}

// A tile's MR rows of x, and K's runs: group g of run s is 4 bytes at
// row[i] + s·segment_stride + 4·g. Without a grid, one run of all the groups.
template <int MR>
struct TileRows {
  const uint8_t* row[MR];
  int64_t segments, segment_groups, segment_stride;
  TileRows(const QGemmArgs& a, int64_t m0)
      : segments(a.x_grid.segments),
        segment_groups(groups_of(a.K) / a.x_grid.segments),
        segment_stride(a.x_grid.segment_stride) {
    const QGemmRowGrid& g = a.x_grid;
    if (g.cols == 0) {
      for (int i = 0; i < MR; ++i) row[i] = a.x + (m0 + i) * a.ldx;
      return;
    }
    // x_row's (b, r, c) for m0, then stepped along (three divisions a tile, not 3·MR).
    int64_t c = m0 % g.cols, r = m0 / g.cols % g.rows, b = m0 / g.cols / g.rows;
    for (int i = 0; i < MR; ++i) {
      row[i] = a.x + b * g.block_stride + r * g.row_stride + c * a.ldx;
      if (++c < g.cols) continue;
      c = 0;
      if (++r == g.rows) r = 0, ++b;
    }
  }
};

// ---------------------------------------------------------------- the epilogue, in scalar form

// y = act(scale·(acc − zx·row_sum) + bias) for one element; the vector kernels
// compute the same with one rounding in the same places (a fused multiply-add).
inline float finish(int32_t acc, int64_t n, const QGemmArgs& a) {
  return int8_output(acc - a.x_zero_point * a.w_row_sums[n], a.x_scale, a.w_scale[n], a.bias ? a.bias[n] : 0.0f,
                     a.relu);
}

// ---------------------------------------------------------------- reference

void qgemm_reference(const QGemmArgs& a) {
  const int64_t K = a.K, run = K / a.x_grid.segments;
  parallel_for(a.M * a.N * K > 8 * kParallelGrain, a.M, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const uint8_t* x = x_row(a, m);
      for (int64_t n = 0; n < a.N; ++n) {
        int32_t acc = 0;
        for (int64_t k = 0; k < K; ++k)
          acc += static_cast<int32_t>(x[k / run * a.x_grid.segment_stride + k % run]) *
                 static_cast<int32_t>(a.w_packed[packed_offset(n, k, K)]);
        a.y[m * a.ldy + n] = finish(acc, n, a);
      }
    }
  });
}

// ---------------------------------------------------------------- AVX-512 VNNI

// acc += the 4-byte dot products of x and w, per 32-bit lane. Written in assembly
// because GCC 12 compiles _mm512_dpbusd_epi32 with its accumulator copied into a
// fresh register and back, which doubles the registers a tile needs: a 6×4 tile
// then spills to the stack and runs at half speed. Here it is updated in place.
__attribute__((target("avx512f"))) inline void dpbusd(__m512i& acc, __m512i x, __m512i w) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
}

// The epilogue of one panel of 16 columns, for one row of sums at a time.
struct PanelEpilogue {
  int64_t n0;
  __mmask16 mask;
  __m512i zsum;  // zx · Σ_k w[n, k]
  __m512 scale, bias;
  bool relu;

  __attribute__((target("avx512f"))) PanelEpilogue(const QGemmArgs& a, int64_t panel)
      : n0(panel * kPanel), relu(a.relu) {
    mask = a.N - n0 >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (a.N - n0)) - 1);
    zsum = _mm512_mullo_epi32(_mm512_set1_epi32(a.x_zero_point), _mm512_maskz_loadu_epi32(mask, a.w_row_sums + n0));
    scale = _mm512_mul_ps(_mm512_set1_ps(a.x_scale), _mm512_maskz_loadu_ps(mask, a.w_scale + n0));
    bias = a.bias ? _mm512_maskz_loadu_ps(mask, a.bias + n0) : _mm512_setzero_ps();
  }
  // y[m, n0 ..] = act(scale · (acc − zsum) + bias)
  __attribute__((target("avx512f"))) void store(const QGemmArgs& a, int64_t m, __m512i acc) const {
    __m512 y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc, zsum)), scale, bias);
    if (relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
    _mm512_mask_storeu_ps(a.y + m * a.ldy + n0, mask, y);
  }
};

template <int MR, int NV>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void tile_vnni512(const QGemmArgs& a, int64_t m0,
                                                                                  int64_t p0) {
  const int64_t G = groups_of(a.K);
  const int8_t* w = a.w_packed + p0 * G * 64;
  const TileRows<MR> x(a, m0);
  __m512i acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_si512();
  // (Every loop over MR and NV is unrolled, so the accumulators stay in registers.)
  for (int64_t s = 0; s < x.segments; ++s) {
    // This run's rows of x and groups of w, both indexed by k alone: GCC then
    // keeps one index for the MR rows, where xs[i] + 4·j gave each its own.
    const uint8_t* xs[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) xs[i] = x.row[i] + s * x.segment_stride;
    const int8_t* ws = w + s * x.segment_groups * 64;
    for (int64_t k = 0; k < 4 * x.segment_groups; k += 4) {  // the run's bytes, a group at a time
      __m512i b[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_si512(ws + v * G * 64 + 16 * k);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        int32_t four;
        std::memcpy(&four, xs[i] + k, 4);
        const __m512i xi = _mm512_set1_epi32(four);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) dpbusd(acc[i][v], xi, b[v]);
      }
    }
  }
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    const PanelEpilogue e(a, p0 + v);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) e.store(a, m0 + i, acc[i][v]);
  }
}

// The instantiation for (rows, panels): full tiles use the largest, edges the exact fit.
template <int MR>
void tile_vnni512_rows(const QGemmArgs& a, int64_t m0, int64_t p0, int64_t nv) {
  for (; nv >= 8 && MR <= 2; nv -= 8, p0 += 8) tile_vnni512<MR, (MR <= 2 ? 8 : 4)>(a, m0, p0);
  for (; nv >= 4; nv -= 4, p0 += 4) tile_vnni512<MR, 4>(a, m0, p0);
  switch (nv) {
    case 3:
      return tile_vnni512<MR, 3>(a, m0, p0);
    case 2:
      return tile_vnni512<MR, 2>(a, m0, p0);
    case 1:
      return tile_vnni512<MR, 1>(a, m0, p0);
  }
}

constexpr int kVnniMR = 6;  // 6 rows × 4 panels = 24 zmm accumulators, 4 weight loads per 24 instructions

void qgemm_vnni512(const QGemmArgs& a) {
  // Batch 1 or 2 streams the weight: 8 panels per tile keep 8 independent
  // accumulator chains in flight per row (vpdpbusd has a 4–5 cycle latency).
  const int64_t nv = panels_per_tile(a.M, panels_of(a.N));
  for_each_tile(a.M, panels_of(a.N), a.M * a.N * a.K, kParallelMacs, kVnniMR, nv,
                [&](int64_t rows, int64_t m0, int64_t p0, int64_t panels) {
                  switch (rows) {
                    case 6:
                      return tile_vnni512_rows<6>(a, m0, p0, panels);
                    case 5:
                      return tile_vnni512_rows<5>(a, m0, p0, panels);
                    case 4:
                      return tile_vnni512_rows<4>(a, m0, p0, panels);
                    case 3:
                      return tile_vnni512_rows<3>(a, m0, p0, panels);
                    case 2:
                      return tile_vnni512_rows<2>(a, m0, p0, panels);
                    case 1:
                      return tile_vnni512_rows<1>(a, m0, p0, panels);
                  }
                });
}

// ---------------------------------------------------------------- AMX

// C tiles MT × NT (each 16 rows × 16 columns) at rows m0 .. m0 + 16·MT − 1 and
// panels p0 .. p0 + NT − 1 (ops/cpu/amx.h has the tile registers' roles). The
// tiles take K in chunks of 16 groups (64 bytes of each row of x, 16 × 64
// bytes of a panel); the last G mod 16 groups and the epilogue run on AVX-512,
// row by row, over the sums the tiles stored.
template <int MT, int NT>
__attribute__((target("amx-tile,amx-int8,amx-bf16,avx512f,avx512bw,avx512vl,avx512vnni"))) void tile_amx(
    const QGemmArgs& a, int64_t m0, int64_t p0) {
  const int64_t G = groups_of(a.K), chunks = G / 16;
  const int8_t* w = a.w_packed + p0 * G * 64;
  const uint8_t* x = a.x + m0 * a.ldx;
  alignas(64) int32_t sums[4][16 * 16];
  amx::multiply_block<false, MT, NT>(x, a.ldx, reinterpret_cast<const uint8_t*>(w), G * 64, chunks, sums);

  for (int j = 0; j < NT; ++j) {
    const PanelEpilogue e(a, p0 + j);
    const int8_t* panel = w + j * G * 64;
    for (int i = 0; i < MT; ++i)
      for (int r = 0; r < 16; ++r) {
        const int64_t m = m0 + 16 * i + r;
        __m512i acc = _mm512_load_si512(sums[2 * i + j] + 16 * r);
        for (int64_t g = 16 * chunks; g < G; ++g) {
          int32_t four;
          std::memcpy(&four, a.x + m * a.ldx + 4 * g, 4);
          dpbusd(acc, _mm512_set1_epi32(four), _mm512_loadu_si512(panel + g * 64));
        }
        e.store(a, m, acc);
      }
  }
}

// Whole blocks of 16 rows on the tiles; the rows left over (all of them below
// batch 16, where a tile would be mostly empty) on the AVX-512 VNNI kernel.
void qgemm_amx(const QGemmArgs& a) {
  const int64_t M16 = a.M / 16 * 16;
  if (M16 > 0)
    for_each_tile<amx::Tiles>(M16, panels_of(a.N), M16 * a.N * a.K, kParallelMacs, 32, 2,
                              [&](int64_t rows, int64_t m0, int64_t p0, int64_t panels) {
                                if (rows == 32)
                                  return panels == 2 ? tile_amx<2, 2>(a, m0, p0) : tile_amx<2, 1>(a, m0, p0);
                                return panels == 2 ? tile_amx<1, 2>(a, m0, p0) : tile_amx<1, 1>(a, m0, p0);
                              });
  if (M16 == a.M) return;
  QGemmArgs rest = a;
  rest.M = a.M - M16, rest.x = a.x + M16 * a.ldx, rest.y = a.y + M16 * a.ldy;
  qgemm_vnni512(rest);
}

// ---------------------------------------------------------------- 256-bit: AVX-VNNI, or AVX2 emulating it

// One 256-bit register holds 8 columns' groups of 4 bytes: a panel is two of them.
// Dot4 adds, per 32-bit lane, the 4 products of x's bytes by w's.
// (The build's baseline is AVX2, so these need no target attribute; the one
// AVX-VNNI instruction is written in assembly so that the AVX2 kernel, the same
// template, is not compiled for a CPU it may not run on.)
struct AvxVnni {
  static constexpr int kXOffset = 0;  // x goes in as stored
  static __m256i dot4(__m256i acc, __m256i x, __m256i w) {
    __asm__("%{vex%} vpdpbusd %2, %1, %0" : "+x"(acc) : "x"(x), "x"(w));  // in place (see dpbusd above)
    return acc;
  }
};
struct Avx2 {
  static constexpr int kXOffset = 128;  // x goes in as x − 128 (see the header)
  static __m256i dot4(__m256i acc, __m256i xs, __m256i w) {
    const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(xs), _mm256_sign_epi8(w, xs));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
};

template <class Isa, int MR, int NV>
void tile_256(const QGemmArgs& a, int64_t m0, int64_t p0) {
  const int64_t G = groups_of(a.K);
  const int8_t* w = a.w_packed + p0 * G * 64;
  const TileRows<MR> x(a, m0);
  constexpr int V = 2 * NV;  // 256-bit halves
  __m256i acc[MR][V];
  for (auto& row : acc)
    for (auto& v : row) v = _mm256_setzero_si256();
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(Isa::kXOffset));
  for (int64_t s = 0; s < x.segments; ++s) {
    const uint8_t* xs[MR];  // as in tile_vnni512: one index in the loop below
    for (int i = 0; i < MR; ++i) xs[i] = x.row[i] + s * x.segment_stride;
    const int8_t* ws = w + s * x.segment_groups * 64;
    for (int64_t k = 0; k < 4 * x.segment_groups; k += 4) {
      __m256i b[V];
      for (int v = 0; v < V; ++v)
        b[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ws + (v / 2) * G * 64 + 16 * k + (v % 2) * 32));
      for (int i = 0; i < MR; ++i) {
        int32_t four;
        std::memcpy(&four, xs[i] + k, 4);
        const __m256i xi = _mm256_xor_si256(_mm256_set1_epi32(four), flip);  // u8 − 128 as s8 when flip is 0x80
        for (int v = 0; v < V; ++v) acc[i][v] = Isa::dot4(acc[i][v], xi, b[v]);
      }
    }
  }
  // Σ x·w = Σ (x − offset)·w + offset·Σ w: the offset joins the zero point.
  const __m256i zx = _mm256_set1_epi32(a.x_zero_point - Isa::kXOffset);
  const __m256 sx = _mm256_set1_ps(a.x_scale), zero = _mm256_setzero_ps();
  for (int v = 0; v < V; ++v) {
    const int64_t n0 = p0 * kPanel + v * 8, cols = std::min<int64_t>(8, a.N - n0);
    if (cols <= 0) break;
    alignas(32) int32_t rs[8] = {};
    alignas(32) float sc[8] = {}, bi[8] = {};
    for (int64_t j = 0; j < cols; ++j)
      rs[j] = a.w_row_sums[n0 + j], sc[j] = a.w_scale[n0 + j], bi[j] = a.bias ? a.bias[n0 + j] : 0.0f;
    const __m256i zsum = _mm256_mullo_epi32(zx, _mm256_load_si256(reinterpret_cast<const __m256i*>(rs)));
    const __m256 scale = _mm256_mul_ps(sx, _mm256_load_ps(sc)), bias = _mm256_load_ps(bi);
    for (int i = 0; i < MR; ++i) {
      __m256 y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[i][v], zsum)), scale, bias);
      if (a.relu) y = _mm256_max_ps(y, zero);
      float* out = a.y + (m0 + i) * a.ldy + n0;
      if (cols == 8) {
        _mm256_storeu_ps(out, y);
      } else {
        alignas(32) float tmp[8];
        _mm256_store_ps(tmp, y);
        std::copy_n(tmp, cols, out);
      }
    }
  }
}

constexpr int k256MR = 4;  // 4 rows × 2 panels = 16 ymm accumulators, 4 weight loads per row

template <class Isa, int MR>
void tile_256_rows(const QGemmArgs& a, int64_t m0, int64_t p0, int64_t nv) {
  for (; nv >= 2; nv -= 2, p0 += 2) tile_256<Isa, MR, 2>(a, m0, p0);
  if (nv == 1) tile_256<Isa, MR, 1>(a, m0, p0);
}

template <class Isa>
void qgemm_256(const QGemmArgs& a) {
  for_each_tile(a.M, panels_of(a.N), a.M * a.N * a.K, kParallelMacs, k256MR, 2,
                [&](int64_t rows, int64_t m0, int64_t p0, int64_t panels) {
                  switch (rows) {
                    case 4:
                      return tile_256_rows<Isa, 4>(a, m0, p0, panels);
                    case 3:
                      return tile_256_rows<Isa, 3>(a, m0, p0, panels);
                    case 2:
                      return tile_256_rows<Isa, 2>(a, m0, p0, panels);
                    case 1:
                      return tile_256_rows<Isa, 1>(a, m0, p0, panels);
                  }
                });
}

const char* qgemm_kernel_id(QGemmKernel k) {
  switch (k) {
    case QGemmKernel::amx:
      return "amx";
    case QGemmKernel::avx512_vnni:
      return "avx512-vnni";
    case QGemmKernel::avx_vnni:
      return "avx-vnni";
    case QGemmKernel::avx2:
      return "avx2";
    default:
      return "reference";
  }
}

}  // namespace

// MINIDL_INT8_GEMM=amx|avx512-vnni|avx-vnni|avx2|reference overrides (tests and benchmarks).
QGemmKernel qgemm_best_kernel() {
  if (const char* env = std::getenv("MINIDL_INT8_GEMM"); env && *env) {
    const std::string e = env;
    for (QGemmKernel k :
         {QGemmKernel::amx, QGemmKernel::avx512_vnni, QGemmKernel::avx_vnni, QGemmKernel::avx2, QGemmKernel::reference})
      if (e == qgemm_kernel_id(k)) return k;
    throw Error("MINIDL_INT8_GEMM='" + e + "' is not amx, avx512-vnni, avx-vnni, avx2 or reference");
  }
  const CpuFeatures& f = cpu_features();
  const CpuPath path = cpu_path();
  if (path == CpuPath::avx512 && f.avx512_vnni && amx_usable()) return QGemmKernel::amx;
  if (path == CpuPath::avx512 && f.avx512_vnni) return QGemmKernel::avx512_vnni;
  if (path != CpuPath::generic && f.avx_vnni) return QGemmKernel::avx_vnni;
  if (path != CpuPath::generic) return QGemmKernel::avx2;
  return QGemmKernel::reference;
}

bool qgemm_reads_grid(QGemmKernel k) { return (k == QGemmKernel::best ? qgemm_best_kernel() : k) != QGemmKernel::amx; }

bool qgemm_kernel_supported(QGemmKernel k) {
  const CpuFeatures& f = cpu_features();
  switch (k) {
    case QGemmKernel::best:
    case QGemmKernel::reference:
      return true;
    case QGemmKernel::avx2:
      return cpu_path_supported(CpuPath::avx2);
    case QGemmKernel::avx_vnni:
      return cpu_path_supported(CpuPath::avx2) && f.avx_vnni;
    case QGemmKernel::avx512_vnni:
      return cpu_path_supported(CpuPath::avx512) && f.avx512_vnni;
    case QGemmKernel::amx:
      return cpu_path_supported(CpuPath::avx512) && f.avx512_vnni && amx_usable();
  }
  return false;
}

const char* qgemm_kernel_name(QGemmKernel k) {
  switch (k) {
    case QGemmKernel::best:
      return qgemm_kernel_name(qgemm_best_kernel());
    case QGemmKernel::reference:
      return "int8-reference";
    case QGemmKernel::avx2:
      return "int8-avx2 (vpmaddubsw, 4x32)";
    case QGemmKernel::avx_vnni:
      return "int8-avx-vnni (vpdpbusd ymm, 4x32)";
    case QGemmKernel::avx512_vnni:
      return "int8-avx512-vnni (vpdpbusd zmm, 6x64)";
    case QGemmKernel::amx:
      return "int8-amx (tdpbusd tiles, 32x32; under 16 rows avx512-vnni)";
  }
  return "?";
}

void qgemm(const QGemmArgs& args, QGemmKernel kernel) {
  if (args.M == 0 || args.N == 0) return;
  if (kernel == QGemmKernel::best) kernel = qgemm_best_kernel();
  if (!qgemm_kernel_supported(kernel))
    throw Error(std::string("qgemm: this CPU (") + cpu_features().model + ") cannot run " + qgemm_kernel_name(kernel));
  QGemmArgs a = args;
  const QGemmRowGrid& g = args.x_grid;
  if (g.cols != 0 || g.segments != 1) {
    MINIDL_CHECK(g.cols >= 1 && g.rows >= 1 && g.segments >= 1 && a.K % (4 * g.segments) == 0,
                 "qgemm: a row grid needs cols, rows and segments >= 1 and each of the {} runs of K = {} a multiple "
                 "of 4 bytes (cols {}, rows {})",
                 g.segments, a.K, g.cols, g.rows);
    if (g.one_stride(a.ldx))  // plain rows: no row arithmetic per tile
      a.x_grid = QGemmRowGrid{};
    else
      MINIDL_CHECK(qgemm_reads_grid(kernel), "qgemm: {} reads rows of x at one stride, not on a grid",
                   qgemm_kernel_name(kernel));
  }
  switch (kernel) {
    case QGemmKernel::amx:
      return qgemm_amx(a);
    case QGemmKernel::avx512_vnni:
      return qgemm_vnni512(a);
    case QGemmKernel::avx_vnni:
      return qgemm_256<AvxVnni>(a);
    case QGemmKernel::avx2:
      return qgemm_256<Avx2>(a);
    default:
      return qgemm_reference(a);
  }
}

// ---------------------------------------------------------------- the tiles' peak

namespace {
// `count` rounds of 4 independent tile products on registers (no loads): the
// multiply rate the tiles sustain on this core, the ceiling the GEMMs above are
// measured against.
__attribute__((target("amx-tile,amx-int8,amx-bf16"))) void tile_products(int64_t count, bool bf16) {
  // (The tile intrinsics are statements: asm blocks with the tile number pasted in.)
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_zero(4);
  _tile_zero(5);
  _tile_zero(6);
  _tile_zero(7);
  for (int64_t i = 0; i < count; ++i) {
    if (bf16) {
      _tile_dpbf16ps(0, 4, 6);
      _tile_dpbf16ps(1, 4, 7);
      _tile_dpbf16ps(2, 5, 6);
      _tile_dpbf16ps(3, 5, 7);
    } else {
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    }
  }
}
}  // namespace

double amx_peak_macs_per_second(bool bf16) {
  if (!amx_usable()) return 0;
  const int64_t count = 20000;
  const double macs_per_product = bf16 ? 16.0 * 16 * 32 : 16.0 * 16 * 64;
  double total = 0;
#pragma omp parallel reduction(+ : total)
  {
    amx::Tiles tiles;
    tile_products(count / 10, bf16);  // warm-up
    const auto t0 = std::chrono::steady_clock::now();
    tile_products(count, bf16);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    total += 4 * count * macs_per_product / s;
  }
  return total;
}

}  // namespace minidl::cpu
