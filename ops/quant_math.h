// ops/quant_math.h — the arithmetic of int8 dynamic quantization, written once
// for both backends: ops/cpu/qgemm.cpp (scalar and vector kernels) and
// cuda/qgemm_kernels.cuh run these, so a CPU and a GPU int8 layer give the same
// bits from the same input.
//
//   activations  x ≈ sx·(xq − zx), xq in [0, 255], sx and zx from x's range;
//   weights      w ≈ sw[n]·wq,     wq in [−127, 127] (quantized ahead of time);
//   the layer    y[m, n] = act( sx·sw[n] · (Σ_k xq·wq − zx·Σ_k wq[n, k]) + bias[n] ).
//
// The sum is exact in int32; only the range → (sx, zx), the rounding of each x
// and the epilogue touch floating point, and each is one expression here.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/dtype.h"  // MINIDL_HOST_DEVICE

namespace minidl {

// The activations' scale and zero point for one call.
struct QuantParams {
  float scale = 1.0f;
  int32_t zero_point = 0;
};

// (sx, zx) from the range [lo, hi] of x, widened to hold 0 first (the caller
// starts lo and hi at 0): zero — a ReLU's output, the padding — is then exactly
// a level, zx. An all-zero x gets scale 1, zero point 0.
MINIDL_HOST_DEVICE inline QuantParams quant_params_from_range(float lo, float hi) {
  QuantParams q;
  if (hi == lo) return q;
  q.scale = (hi - lo) / 255.0f;
  const float z = rintf(-lo / q.scale);
  q.zero_point = static_cast<int32_t>(z < 0.0f ? 0.0f : z > 255.0f ? 255.0f : z);
  return q;
}

// xq = clamp(round(x / sx) + zx, 0, 255), rounding half to even; inv_scale = 1 / sx.
// Round first, then add the zero point (the vector kernels do the same).
MINIDL_HOST_DEVICE inline int32_t quantize_u8(float x, float inv_scale, int32_t zero_point) {
  const float q = rintf(x * inv_scale) + static_cast<float>(zero_point);
  return static_cast<int32_t>(q < 0.0f ? 0.0f : q > 255.0f ? 255.0f : q);
}

// The epilogue of one output: `centred` = Σ xq·wq − zx·Σ wq (exact), then one
// multiply by sx·sw[n] and the bias added in a single rounding (a fused
// multiply-add), then the ReLU. A NaN stays NaN through the ReLU.
MINIDL_HOST_DEVICE inline float int8_output(int32_t centred, float x_scale, float w_scale, float bias, bool relu) {
  const float scale = x_scale * w_scale;
  const float v = fmaf(static_cast<float>(centred), scale, bias);
  return relu && v < 0.0f ? 0.0f : v;
}

}  // namespace minidl
