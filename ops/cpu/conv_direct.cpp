// ops/cpu/conv_direct.cpp — a first layer's convolution, written channels last.
//
// A network's first convolution sees the image: one channel (or three), so a
// patch is K = C·kh·kw = 9 (or 27) values, and the layer's cost is not its
// arithmetic but moving data. Through im2col (conv.cpp) it writes the patches
// out (K rows of every output position), packs them for the GEMM, and the GEMM
// (O × K × positions) does only K multiply-adds per output it stores. And its
// output comes out channels first, (O, Ho·Wo), which an int8 convolution after
// it transposes straight back to channels last.
//
// Here each output position is a row of an implicit GEMM against the weight
// (K, O), the way qgemm reads its patches in place: a tile of kRows positions
// × up to 64 channels sits in AVX-512 registers, and for each k of the patch
// one value of the input is broadcast per position and multiplied into the
// 16-channel vectors of the weight's row k. The input is read where it lies in a
// zero-padded copy of the sample (the padding is then just values that are 0);
// the output is stored channels last, (Ho, Wo, O) per sample — each tile a few
// whole rows of O floats — and is pooled channels last before it is stored
// when the plan fuses a max pool. Asked for channels first, each sample's
// output (pooled or not) is transposed once, from cache, by 8×8 blocks in
// registers.
//
// The sums run over k in the patch's order from 0, one fused multiply-add at a
// time, then the bias and the ReLU: the order the GEMM of the im2col path uses.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "ops/cpu/conv_batching.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"

#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12's _mm512_undefined_* (see qgemm.cpp)
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace minidl::cpu {

namespace {

constexpr int kRows = 6;     // output positions per tile
constexpr int kVectors = 4;  // 16-channel vectors per tile: 64 channels

// What every tile of one call shares.
struct DirectConv {
  int64_t K, O, Opad;           // patch length; channels, rounded up to 16
  std::vector<int64_t> offset;  // k -> where patch element k lies from the window's corner in the padded sample
  std::vector<float> w, bias;   // (K, Opad) and (Opad), zero past O
  bool relu;
};

// y[r·ldy + o] for o in [o0, o0 + 16·V) of the R positions whose windows start at
// xp + corner[r]; the last vector stores only the lanes `last`.
template <int R, int V>
__attribute__((target("avx512f"))) void tile_avx512(const DirectConv& d, const float* xp, const int64_t* corner,
                                                    int64_t o0, __mmask16 last, float* y, int64_t ldy) {
  __m512 acc[R][V];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  const float* w = d.w.data() + o0;
  for (int64_t k = 0; k < d.K; ++k, w += d.Opad) {
    __m512 wk[V];
    for (int v = 0; v < V; ++v) wk[v] = _mm512_loadu_ps(w + 16 * v);
    const int64_t at = d.offset[static_cast<size_t>(k)];
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(xp[corner[r] + at]);
      for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(x, wk[v], acc[r][v]);
    }
  }
  for (int v = 0; v < V; ++v) {
    const __m512 b = _mm512_loadu_ps(d.bias.data() + o0 + 16 * v);
    const __mmask16 lanes = v == V - 1 ? last : __mmask16(0xFFFF);
    for (int r = 0; r < R; ++r) {
      __m512 out = _mm512_add_ps(acc[r][v], b);
      if (d.relu) out = _mm512_max_ps(out, _mm512_setzero_ps());
      _mm512_mask_storeu_ps(y + r * ldy + o0 + 16 * v, lanes, out);
    }
  }
}

// The same sums one value at a time: the reference, and every path without AVX-512.
void tile_reference(const DirectConv& d, const float* xp, const int64_t* corner, int rows, float* y, int64_t ldy) {
  for (int r = 0; r < rows; ++r)
    for (int64_t o = 0; o < d.O; ++o) {
      float acc = 0;
      for (int64_t k = 0; k < d.K; ++k)
        acc = std::fma(xp[corner[r] + d.offset[static_cast<size_t>(k)]], d.w[static_cast<size_t>(k * d.Opad + o)], acc);
      const float out = acc + d.bias[static_cast<size_t>(o)];
      y[r * ldy + o] = d.relu ? std::max(out, 0.0f) : out;
    }
}

template <int R>
void tile_vectors(const DirectConv& d, const float* xp, const int64_t* corner, float* y, int64_t ldy) {
  for (int64_t o0 = 0; o0 < d.Opad; o0 += 16 * kVectors) {
    const int64_t vectors = std::min<int64_t>(kVectors, (d.Opad - o0) / 16);
    const int64_t in_last = d.O - o0 - 16 * (vectors - 1);  // 1..16 channels in the last vector
    const auto last = static_cast<__mmask16>((1u << std::min<int64_t>(in_last, 16)) - 1);
    switch (vectors) {
      case 1:
        tile_avx512<R, 1>(d, xp, corner, o0, last, y, ldy);
        break;
      case 2:
        tile_avx512<R, 2>(d, xp, corner, o0, last, y, ldy);
        break;
      case 3:
        tile_avx512<R, 3>(d, xp, corner, o0, last, y, ldy);
        break;
      default:
        tile_avx512<R, 4>(d, xp, corner, o0, last, y, ldy);
        break;
    }
  }
}

void tile(const DirectConv& d, bool fast, const float* xp, const int64_t* corner, int rows, float* y, int64_t ldy) {
  if (!fast) return tile_reference(d, xp, corner, rows, y, ldy);
  switch (rows) {
    case 1:
      return tile_vectors<1>(d, xp, corner, y, ldy);
    case 2:
      return tile_vectors<2>(d, xp, corner, y, ldy);
    case 3:
      return tile_vectors<3>(d, xp, corner, y, ldy);
    case 4:
      return tile_vectors<4>(d, xp, corner, y, ldy);
    case 5:
      return tile_vectors<5>(d, xp, corner, y, ldy);
    default:
      return tile_vectors<6>(d, xp, corner, y, ldy);
  }
}

}  // namespace

bool conv2d_direct_fast() { return cpu_path() == CpuPath::avx512; }

void conv2d_direct(const DirectConvArgs& a, bool force_reference) {
  const Conv2dParams& p = a.params;
  MINIDL_CHECK(p.groups == 1, "conv2d_direct: groups = 1 only, got {}", p.groups);
  MINIDL_CHECK(a.x && a.w && a.y, "conv2d_direct: a pointer argument is null");
  const int64_t C = a.C, H = a.H, W = a.W, kh = a.kernel_h, kw = a.kernel_w;
  const ConvOutputSize size = checked_conv_output("conv2d_direct", H, W, kh, kw, p, a.max_pool, a.Hy, a.Wy);
  const int64_t Ho = size.Ho, Wo = size.Wo;
  if (a.N == 0 || a.O == 0) return;

  // The weight (O, C, kh, kw) as (K, Opad): row k the 16-channel vectors the tiles load.
  DirectConv d;
  d.K = C * kh * kw, d.O = a.O, d.Opad = (a.O + 15) / 16 * 16, d.relu = p.relu;
  d.w.assign(static_cast<size_t>(d.K * d.Opad), 0.0f);
  d.bias.assign(static_cast<size_t>(d.Opad), 0.0f);
  for (int64_t o = 0; o < d.O; ++o) {
    for (int64_t k = 0; k < d.K; ++k) d.w[static_cast<size_t>(k * d.Opad + o)] = a.w[o * d.K + k];
    if (a.bias) d.bias[static_cast<size_t>(o)] = a.bias[o];
  }
  const int64_t Hp = H + 2 * p.pad_h, Wp = W + 2 * p.pad_w, plane = Hp * Wp;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < kh; ++i)
      for (int64_t j = 0; j < kw; ++j) d.offset.push_back(c * plane + i * p.dilation_h * Wp + j * p.dilation_w);
  const bool fast = !force_reference && conv2d_direct_fast();

  // Each sample zero-padded once, then its positions in tiles of kRows.
  const int64_t P = Ho * Wo, tiles = (P + kRows - 1) / kRows, plane_y = a.Hy * a.Wy;
  Workspace<float> padded(a.N * C * plane);
  parallel_for(a.N * C * plane >= kParallelGrain, a.N * C, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {  // plane i = (n, c)
      float* dst = padded.data() + i * plane;
      std::fill(dst, dst + plane, 0.0f);
      for (int64_t h = 0; h < H; ++h) std::copy_n(a.x + (i * H + h) * W, W, dst + (h + p.pad_h) * Wp + p.pad_w);
    }
  });
  auto run_tiles = [&](int64_t n, int64_t t0, int64_t t1, float* out) {  // out: sample n's (P, O)
    const float* xp = padded.data() + n * C * plane;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t first = t * kRows;
      const int rows = static_cast<int>(std::min<int64_t>(kRows, P - first));
      int64_t corner[kRows];
      for (int r = 0; r < rows; ++r) {
        const int64_t oh = (first + r) / Wo, ow = (first + r) % Wo;
        corner[r] = oh * p.stride_h * Wp + ow * p.stride_w;
      }
      tile(d, fast, xp, corner, rows, out + first * d.O, d.O);
    }
  };
  if (!a.max_pool && !a.y_channels_first) {  // every (sample, tile) independent, written straight into y
    parallel_for(a.N * P * d.O >= kParallelGrain, a.N * tiles, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1;) {
        const int64_t n = i / tiles, t0 = i % tiles, t1 = std::min(tiles, t0 + (i1 - i));
        run_tiles(n, t0, t1, a.y + n * P * d.O);
        i += t1 - t0;
      }
    });
    return;
  }
  // Pooled, or stored channels first: a sample's whole output first (in cache),
  // then its windows, then the transpose of what is left.
  maybe_parallel(a.N > 1 && a.N * P * d.O >= kParallelGrain && !in_parallel(), [&] {
    Workspace<float> out(P * d.O), pooled(a.max_pool && a.y_channels_first ? plane_y * d.O : 0);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < a.N; ++n) {
      float* y = a.y + n * plane_y * d.O;  // sample n, in either layout
      run_tiles(n, 0, tiles, out.data());
      const float* last = out.data();  // (plane_y, O)
      if (a.max_pool) {
        float* to = a.y_channels_first ? pooled.data() : y;
        max_pool_channels_last(to, out.data(), Ho, Wo, d.O, *a.max_pool, a.Hy, a.Wy);
        last = to;
      }
      if (a.y_channels_first) to_channels_first(y, last, 1, d.O, plane_y);  // one sample: on this thread
    }
  });
}

}  // namespace minidl::cpu
