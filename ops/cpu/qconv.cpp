// ops/cpu/qconv.cpp — the int8 convolution of dynamic quantization.
//
// The int8 GEMM (qgemm.cpp) multiplies rows of unsigned activation bytes by a
// packed signed weight, 4 bytes to a lane, and adds along each row. Each output
// position is a row, its patch (K = kh·kw·C bytes) the row's K:
//
//   xq   (N, Hp, Wp, C) u8   = quantize(x), channels last, padded: one pass over x
//   out  (B·Ho·Wo, O) f32    = qgemm(patches, W), scale, bias and ReLU in its epilogue
//   y    (N, O, Ho, Wo)      = out transposed per sample (max pooled first when asked)
//
// Either end may be channels last instead: an x stored (N, H, W, C) skips the
// transpose on the way in, a y stored (N, Ho, Wo, O) the one on the way out —
// without a pool, the GEMM then writes y itself. A compiled plan keeps the
// activations between int8 convolutions that way (compile/plan.cpp).
//
// Channels last is what makes the patches cheap. A patch of a 3×3 conv over 32
// channels is 3 runs of 3·32 contiguous bytes — one per kernel row — where from
// (C, H, W) it would be 288 single bytes. The weight is packed in the same
// order, (O, kh, kw, C) (ops/quant.cpp), so the GEMM can read the patches where
// they lie (an "implicit GEMM"): row (n, oh, ow) starts at pixel
// (oh·sh, ow·sw) of sample n's padded image, and its K is kh runs of kw·C bytes,
// one image row (Wp·C bytes, times the dilation) apart. qgemm takes exactly that
// address map (QGemmRowGrid, kernels.h); no byte is copied. Zero padding is the
// zero point, written once around each image: the quantization's range always
// holds 0, so 0 is exactly that level.
//
// Where a kernel row's bytes are not whole groups of 4 (C = 1 or 3, a first
// layer), the columns are dilated, or the kernel is AMX (its tiles load rows at
// one stride), the patches are gathered into rows first ("im2row", the
// transpose of the f32 convolution's im2col), B samples at a time, and qgemm
// reads those.
//
// The activations' scale and zero point come from the whole input of the call
// (choose_quant_params), as quantized_linear's do. Batches of samples share a
// GEMM and run on separate threads exactly as the f32 convolution's do
// (conv_batching.h).
//
// With a max pool, each sample's output is pooled while still channels last —
// the window's rows of O values are compared as vectors — so only the pooled
// quarter is transposed and written to y. Both transposes move 8×8 blocks of
// floats in registers (transpose_block, transpose8.h).
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "ops/cpu/conv_batching.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"
#include "ops/cpu/transpose8.h"
#include "ops/quant_math.h"

namespace minidl::cpu {

namespace {

struct Geometry {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo, K;  // K = kh·kw·C, a patch's bytes
};

// x (N, C, H, W) f32 -> xq (N, H + 2·ph, W + 2·pw, C) u8, the border the zero
// point. A block of kPixels pixels at a time: the block's (C, kPixels) floats
// are transposed into `tile` (kPixels, C) as 8×8 blocks in registers, and the
// tile, now in xq's order, is quantized in contiguous runs (one per image row
// it touches when the image is padded left and right). Quantizing first and
// moving bytes would scatter every byte C apart, one instruction each.
// x_channels_last: x is (N, H, W, C) already, and each of its image rows is
// quantized as one run into its padded place.
void quantize_channels_last(const float* x, bool x_channels_last, const Geometry& s, QuantParams q, int64_t ph,
                            int64_t pw, uint8_t* xq) {
  constexpr int64_t kPixels = 64;
  const int64_t C = s.C, plane = s.H * s.W, blocks = (plane + kPixels - 1) / kPixels;
  const int64_t Hp = s.H + 2 * ph, Wp = s.W + 2 * pw;
  const auto zero = static_cast<uint8_t>(q.zero_point);
  maybe_parallel(s.N * C * plane >= kParallelGrain && !in_parallel(), [&] {
    if (x_channels_last) {
#pragma omp for schedule(static) nowait
      for (int64_t r = 0; r < s.N * s.H; ++r) {  // image row h of sample n
        const int64_t n = r / s.H, h = r % s.H;
        quantize_span_u8(x + r * s.W * C, s.W * C, q, xq + ((n * Hp + h + ph) * Wp + pw) * C);
      }
    } else {
      std::vector<float> tile_storage(static_cast<size_t>(kPixels * C));
      float* tile = tile_storage.data();
#pragma omp for schedule(static) nowait
      for (int64_t t = 0; t < s.N * blocks; ++t) {
        const int64_t n = t / blocks, p0 = t % blocks * kPixels, count = std::min(kPixels, plane - p0);
        // tile[i·C + c] = x[n, c, p0 + i]
        transpose_block(tile, C, x + n * C * plane + p0, plane, count, C);
        for (int64_t i = 0; i < count;) {  // pixel p0 + i is (h, w); the run goes to the end of its row
          const int64_t h = (p0 + i) / s.W, w = (p0 + i) % s.W;
          const int64_t run = pw == 0 ? count - i : std::min(count - i, s.W - w);
          quantize_span_u8(tile + i * C, run * C, q, xq + ((n * Hp + h + ph) * Wp + w + pw) * C);
          i += run;
        }
      }
    }
    if (ph == 0 && pw == 0) return;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < s.N * Hp; ++r) {  // padded row r of xq: all border, or its two ends
      uint8_t* row = xq + r * Wp * C;
      const int64_t h = r % Hp;
      if (h < ph || h >= ph + s.H) {
        std::memset(row, zero, static_cast<size_t>(Wp * C));
      } else {
        std::memset(row, zero, static_cast<size_t>(pw * C));
        std::memset(row + (pw + s.W) * C, zero, static_cast<size_t>(pw * C));
      }
    }
  });
}

// rows (Ho·Wo, ldr) := the patches of one sample img (H, W, C): row oh·Wo + ow
// holds, for each kernel row i and column j, the C bytes of pixel
// (oh·sh − ph + i·dh, ow·sw − pw + j·dw), or the zero point where that lies in
// the padding; then the zero point up to ldr (the GEMM's groups of 4 bytes).
void gather_patches(uint8_t* rows, int64_t ldr, const uint8_t* img, const Geometry& s, const Conv2dParams& p,
                    uint8_t zero) {
  const int64_t run = s.kw * s.C;  // one kernel row's bytes
  for (int64_t oh = 0; oh < s.Ho; ++oh)
    for (int64_t ow = 0; ow < s.Wo; ++ow) {
      uint8_t* dst = rows + (oh * s.Wo + ow) * ldr;
      const int64_t w0 = ow * p.stride_w - p.pad_w, w_last = w0 + (s.kw - 1) * p.dilation_w;
      const bool row_inside = w0 >= 0 && w_last < s.W;
      for (int64_t i = 0; i < s.kh; ++i, dst += run) {
        const int64_t h = oh * p.stride_h - p.pad_h + i * p.dilation_h;
        if (h < 0 || h >= s.H) {
          std::memset(dst, zero, static_cast<size_t>(run));
          continue;
        }
        const uint8_t* src = img + h * s.W * s.C;
        if (row_inside && p.dilation_w == 1) {  // the kernel row's pixels are adjacent: one copy
          if (run <= 16)  // a first layer's few channels (3 bytes for the cnn's conv1): no call to memcpy
            for (int64_t k = 0; k < run; ++k) dst[k] = src[w0 * s.C + k];
          else
            std::memcpy(dst, src + w0 * s.C, static_cast<size_t>(run));
          continue;
        }
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t w = w0 + j * p.dilation_w;
          if (w < 0 || w >= s.W)
            std::memset(dst + j * s.C, zero, static_cast<size_t>(s.C));
          else
            std::memcpy(dst + j * s.C, src + w * s.C, static_cast<size_t>(s.C));
        }
      }
      std::memset(dst, zero, static_cast<size_t>(ldr - s.K));
    }
}

}  // namespace

void qconv2d(const QConv2dArgs& a) {
  const Conv2dParams& p = a.params;
  MINIDL_CHECK(p.groups == 1, "qconv2d: the int8 convolution takes groups = 1, got {}", p.groups);
  MINIDL_CHECK(a.x && a.w_packed && a.w_row_sums && a.w_scale && a.y, "qconv2d: a pointer argument is null");
  const ConvOutputSize size =
      checked_conv_output("qconv2d", a.H, a.W, a.kernel_h, a.kernel_w, p, a.max_pool, a.Hy, a.Wy);
  const Geometry s{a.N, a.C, a.H, a.W, a.O, a.kernel_h, a.kernel_w, size.Ho, size.Wo, a.kernel_h * a.kernel_w * a.C};
  MINIDL_CHECK(s.K >= 1, "qconv2d: a patch of {} values ({} channels, a {}x{} kernel)", s.K, s.C, s.kh, s.kw);
  if (s.N == 0 || s.O == 0) return;

  const int64_t P = s.Ho * s.Wo, Kp = qgemm_padded_k(s.K), plane_y = a.Hy * a.Wy;
  const QGemmKernel kernel = a.kernel == QGemmKernel::best ? qgemm_best_kernel() : a.kernel;
  // Read in place, row (b, oh, ow) of the GEMM is pixel (oh·sh, ow·sw) of padded
  // image b, then kh runs of kw·C bytes, dilation_h image rows apart.
  const int64_t Wp = s.W + 2 * p.pad_w, padded_image = (s.H + 2 * p.pad_h) * Wp * s.C, ldx = p.stride_w * s.C;
  QGemmRowGrid grid;
  grid.cols = s.Wo, grid.rows = s.Ho, grid.row_stride = p.stride_h * Wp * s.C, grid.block_stride = padded_image;
  grid.segments = s.kh, grid.segment_stride = p.dilation_h * Wp * s.C;
  // That needs each kernel row's kw·C bytes adjacent in xq and whole groups of 4,
  // and a kernel that reads a grid — or a grid of plain rows (a 1×1 at stride 1).
  const bool in_place = a.patches == QConvPatches::best && p.dilation_w == 1 && s.kw * s.C % 4 == 0 &&
                        (grid.one_stride(ldx) || qgemm_reads_grid(kernel));
  // The range of every value of x, in either layout. Throws on NaN or ±inf.
  const QuantParams q = choose_quant_params(a.x, s.N * s.C, s.H * s.W, s.H * s.W);
  // Padded only when read in place (gather_patches writes the padding itself).
  const int64_t image = in_place ? padded_image : s.H * s.W * s.C;
  Workspace<uint8_t> xq(s.N * image);
  quantize_channels_last(a.x, a.x_channels_last, s, q, in_place ? p.pad_h : 0, in_place ? p.pad_w : 0, xq.data());

  // A channels-last y without a pool is the GEMM's own output: written in place.
  const bool direct = a.y_channels_last && !a.max_pool;
  const Batching bt = batching(s.N, P * ((in_place ? 0 : Kp) + s.O * int64_t{sizeof(float)}));
  maybe_parallel(bt.parallel, [&] {
    Workspace<uint8_t> rows(in_place ? 0 : bt.B * P * Kp);
    Workspace<float> out(direct ? 0 : bt.B * P * s.O);
    Workspace<float> pooled(a.max_pool && !a.y_channels_last ? plane_y * s.O : 0);
#pragma omp for schedule(static)
    for (int64_t batch = 0; batch < bt.batches; ++batch) {
      const auto [n0, nb] = bt.range(batch);
      QGemmArgs g;
      g.M = nb * P, g.N = s.O, g.K = s.K;
      if (in_place) {
        g.x = xq.data() + n0 * image, g.ldx = ldx, g.x_grid = grid;
      } else {
        for (int64_t b = 0; b < nb; ++b)
          gather_patches(rows.data() + b * P * Kp, Kp, xq.data() + (n0 + b) * image, s, p,
                         static_cast<uint8_t>(q.zero_point));
        g.x = rows.data(), g.ldx = Kp;
      }
      g.x_scale = q.scale, g.x_zero_point = q.zero_point;
      g.w_packed = a.w_packed, g.w_row_sums = a.w_row_sums, g.w_scale = a.w_scale;
      g.bias = a.bias, g.relu = p.relu;
      g.y = direct ? a.y + n0 * P * s.O : out.data(), g.ldy = s.O;
      qgemm(g, kernel);
      for (int64_t b = 0; b < nb && !direct; ++b) {
        float* y = a.y + (n0 + b) * s.O * plane_y;  // sample n0 + b, in either layout
        const float* o = out.data() + b * P * s.O;
        if (a.max_pool && a.y_channels_last) {
          max_pool_channels_last(y, o, s.Ho, s.Wo, s.O, *a.max_pool, a.Hy, a.Wy);
        } else if (a.max_pool) {
          max_pool_channels_last(pooled.data(), o, s.Ho, s.Wo, s.O, *a.max_pool, a.Hy, a.Wy);
          to_channels_first(y, pooled.data(), 1, s.O, plane_y);  // one sample: on this thread
        } else {
          to_channels_first(y, o, 1, s.O, P);
        }
      }
    }
  });
}

}  // namespace minidl::cpu
