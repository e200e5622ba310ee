// ops/cpu/channels_last.cpp — moving activations between (N, C, P) and
// (N, P, C), and the two plan steps that read them channels last.
//
// An int8 convolution reads its input channels last and produces its output
// that way (ops/cpu/qconv.cpp): a patch is then a few runs of contiguous bytes,
// and an output position is a row of the GEMM. Between two such convolutions a
// compiled plan leaves the values channels last instead of transposing them to
// (N, C, H, W) and straight back. Where the two orders meet — the join of a
// residual block whose shortcut is stored channels first, the global average
// pool at the end, a layer that reads (N, C, H, W) — these do the conversion,
// each a pass over one sample at a time, while it is in cache.
#include <algorithm>
#include <vector>

#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"
#include "ops/cpu/transpose8.h"

namespace minidl::cpu {

namespace {
// Samples in parallel when there is enough work for the threads to pay.
template <class Body>
void per_sample(int64_t N, int64_t per, Body&& body) {
  parallel_for(N * per >= kParallelGrain && N > 1, N, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) body(n);
  });
}
}  // namespace

void to_channels_last(float* y, const float* x, int64_t N, int64_t C, int64_t P) {
  // y[n][p·C + c] = x[n][c·P + p]: column p of y's rows is contiguous in x.
  per_sample(N, C * P, [&](int64_t n) { transpose_block(y + n * P * C, C, x + n * C * P, P, P, C); });
}

void to_channels_first(float* y, const float* x, int64_t N, int64_t C, int64_t P) {
  per_sample(N, C * P, [&](int64_t n) { transpose_block(y + n * C * P, P, x + n * P * C, C, C, P); });
}

void add_relu_channels_last(float* y, const float* s, int64_t N, int64_t C, int64_t P) {
  constexpr int64_t kPixels = 32;  // s's (C, kPixels) block, transposed into a tile, then added row by row
  per_sample(N, C * P, [&](int64_t n) {
    std::vector<float> tile(static_cast<size_t>(kPixels * C));
    float* yn = y + n * P * C;
    const float* sn = s + n * C * P;
    for (int64_t p0 = 0; p0 < P; p0 += kPixels) {
      const int64_t count = std::min(kPixels, P - p0);
      transpose_block(tile.data(), C, sn + p0, P, count, C);  // tile[i·C + c] = s[n, c, p0 + i]
      float* __restrict yp = yn + p0 * C;
      const float* __restrict tp = tile.data();
      for (int64_t i = 0; i < count * C; ++i) yp[i] = std::max(yp[i] + tp[i], 0.0f);
    }
  });
}

void add_relu_channels_first(float* y, const float* s, int64_t N, int64_t C, int64_t P) {
  constexpr int64_t kPixels = 32;  // s's (kPixels, C) block, transposed to a (C, kPixels) tile, added per channel
  per_sample(N, C * P, [&](int64_t n) {
    std::vector<float> tile(static_cast<size_t>(kPixels * C));
    float* yn = y + n * C * P;
    const float* sn = s + n * P * C;
    for (int64_t p0 = 0; p0 < P; p0 += kPixels) {
      const int64_t count = std::min(kPixels, P - p0);
      transpose_block(tile.data(), kPixels, sn + p0 * C, C, C, count);  // tile[c·kPixels + i] = s[n, p0 + i, c]
      for (int64_t c = 0; c < C; ++c) {
        float* __restrict yp = yn + c * P + p0;
        const float* __restrict tp = tile.data() + c * kPixels;
        for (int64_t i = 0; i < count; ++i) yp[i] = std::max(yp[i] + tp[i], 0.0f);
      }
    }
  });
}

void max_pool_channels_last(float* y, const float* x, int64_t H, int64_t W, int64_t C, const Pool2dParams& p,
                            int64_t Hy, int64_t Wy) {
  for (int64_t ph = 0; ph < Hy; ++ph)
    for (int64_t pw = 0; pw < Wy; ++pw) {
      const int64_t h0 = std::max<int64_t>(ph * p.stride_h - p.pad_h, 0);
      const int64_t h1 = std::min(ph * p.stride_h - p.pad_h + p.kernel_h, H);
      const int64_t w0 = std::max<int64_t>(pw * p.stride_w - p.pad_w, 0);
      const int64_t w1 = std::min(pw * p.stride_w - p.pad_w + p.kernel_w, W);
      float* __restrict best = y + (ph * Wy + pw) * C;
      std::copy(x + (h0 * W + w0) * C, x + (h0 * W + w0 + 1) * C, best);
      for (int64_t h = h0; h < h1; ++h)
        for (int64_t w = (h == h0 ? w0 + 1 : w0); w < w1; ++w) {
          const float* __restrict v = x + (h * W + w) * C;
          for (int64_t c = 0; c < C; ++c) best[c] = (v[c] > best[c] || v[c] != v[c]) ? v[c] : best[c];
        }
    }
}

void global_avg_pool_channels_last(float* y, const float* x, int64_t N, int64_t C, int64_t P) {
  per_sample(N, C * P, [&](int64_t n) {
    float* __restrict acc = y + n * C;
    const float* xn = x + n * P * C;
    std::fill(acc, acc + C, 0.0f);
    for (int64_t p = 0; p < P; ++p) {  // pixel order, as the channels-first kernel sums each plane
      const float* __restrict v = xn + p * C;
      for (int64_t c = 0; c < C; ++c) acc[c] += v[c];
    }
    for (int64_t c = 0; c < C; ++c) acc[c] /= static_cast<float>(P);
  });
}

}  // namespace minidl::cpu
