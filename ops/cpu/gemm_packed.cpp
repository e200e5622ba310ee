// ops/cpu/gemm_packed.cpp — an f32 GEMM against a weight packed once, ahead of
// time: what a compiled plan (compile/plan.h) runs for its Linear layers.
//
//   y (M, N) = act( x (M, K) · W (N, K)ᵀ + bias (N) )
//
// The general GEMM (gemm.cpp) takes any operands and packs both of them on every
// call; that pays at large M, where each packed panel of W is reused by many
// rows, but at batch 1–16 the packing of W costs as much as the product itself.
// A plan knows W will not change, so it packs W once into the layout of the int8
// and bf16 GEMMs with one f32 per lane: panel p holds, for each k, columns
// 16p .. 16p+15's W[n, k] — 64 bytes, one zmm register. The micro-kernel keeps
// an MR × (16·NV) tile of sums in registers; per k it loads NV vectors of W and
// broadcasts x[m, k] for each of its MR rows: MR·NV FMAs per NV loads, W streamed
// from memory exactly once per row block.
//
// Kernels: AVX-512 (the tile above) and the reference loop over the same layout,
// tested against each other and the f64 product (tests/test_plan.cpp).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "core/error.h"
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
constexpr int64_t kParallelMacs = 65536;  // a second thread from ~32 K multiply-adds each
}  // namespace

int64_t gemm_packed_f32_elements(int64_t N, int64_t K) { return panels_of(N) * K * kPanel; }

void gemm_packed_f32_pack(const float* w, int64_t ldw, int64_t N, int64_t K, float* packed) {
  const int64_t P = panels_of(N);
  parallel_for(N * K >= 4 * kParallelGrain, P, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      float* panel = packed + p * K * kPanel;
      for (int64_t j = 0; j < kPanel; ++j) {
        const int64_t n = p * kPanel + j;
        for (int64_t k = 0; k < K; ++k) panel[k * kPanel + j] = n < N ? w[n * ldw + k] : 0.0f;  // padding: 0
      }
    }
  });
}

namespace {

void reference(const PackedGemmArgs& a) {
  parallel_for(a.M * a.N * a.K > 8 * kParallelGrain, a.M, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m)
      for (int64_t n = 0; n < a.N; ++n) {
        const float* panel = a.w_packed + (n / kPanel) * a.K * kPanel + n % kPanel;
        float acc = 0;
        for (int64_t k = 0; k < a.K; ++k) acc += a.x[m * a.ldx + k] * panel[k * kPanel];
        const float v = acc + (a.bias ? a.bias[n] : 0.0f);
        a.y[m * a.ldy + n] = a.relu ? std::max(v, 0.0f) : v;
      }
  });
}

template <int MR, int NV>
__attribute__((target("avx512f"))) void tile_512(const PackedGemmArgs& a, int64_t m0, int64_t p0) {
  const float* w = a.w_packed + p0 * a.K * kPanel;
  const float* x = a.x + m0 * a.ldx;
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < a.K; ++k) {
    __m512 b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_ps(w + (v * a.K + k) * kPanel);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512 xi = _mm512_set1_ps(x[i * a.ldx + k]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(xi, b[v], acc[i][v]);
    }
  }
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) {
    const int64_t n0 = (p0 + v) * kPanel;
    const __mmask16 m = a.N - n0 >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (a.N - n0)) - 1);
    const __m512 bias = a.bias ? _mm512_maskz_loadu_ps(m, a.bias + n0) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      __m512 y = _mm512_add_ps(acc[i][v], bias);
      if (a.relu) y = _mm512_max_ps(y, _mm512_setzero_ps());
      _mm512_mask_storeu_ps(a.y + (m0 + i) * a.ldy + n0, m, y);
    }
  }
}

// Full tiles use the widest instantiation, the edges the exact fit.
template <int MR>
void tile_rows(const PackedGemmArgs& a, int64_t m0, int64_t p0, int64_t nv) {
  for (; nv >= 8 && MR <= 2; nv -= 8, p0 += 8) tile_512<MR, (MR <= 2 ? 8 : 4)>(a, m0, p0);
  for (; nv >= 4; nv -= 4, p0 += 4) tile_512<MR, 4>(a, m0, p0);
  switch (nv) {
    case 3:
      return tile_512<MR, 3>(a, m0, p0);
    case 2:
      return tile_512<MR, 2>(a, m0, p0);
    case 1:
      return tile_512<MR, 1>(a, m0, p0);
  }
}

void avx512(const PackedGemmArgs& a) {
  // Batch 1 or 2: 8 panels per tile, 8 independent FMA chains per row (latency 4).
  for_each_tile(a.M, panels_of(a.N), a.M * a.N * a.K, kParallelMacs, 6, panels_per_tile(a.M, panels_of(a.N)),
                [&](int64_t rows, int64_t m0, int64_t p0, int64_t panels) {
                  switch (rows) {
                    case 6:
                      return tile_rows<6>(a, m0, p0, panels);
                    case 5:
                      return tile_rows<5>(a, m0, p0, panels);
                    case 4:
                      return tile_rows<4>(a, m0, p0, panels);
                    case 3:
                      return tile_rows<3>(a, m0, p0, panels);
                    case 2:
                      return tile_rows<2>(a, m0, p0, panels);
                    case 1:
                      return tile_rows<1>(a, m0, p0, panels);
                  }
                });
}

}  // namespace

bool gemm_packed_f32_fast() { return cpu_path() == CpuPath::avx512; }

void gemm_packed_f32(const PackedGemmArgs& a, bool force_reference) {
  if (a.M == 0 || a.N == 0) return;
  if (force_reference || !gemm_packed_f32_fast()) return reference(a);
  avx512(a);
}

}  // namespace minidl::cpu
