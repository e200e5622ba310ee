// ops/matmul.h — matrix products.
#pragma once

#include "core/tensor.h"
#include "ops/kernel_types.h"

namespace minidl {

// torch.matmul semantics: 1-D operands are promoted to a row (left) or a column
// (right) and the added dim removed again; operands of 3+ dims are batches of
// matrices whose batch dims broadcast. a (..., M, K) · b (..., K, N) -> (..., M, N).
Tensor matmul(const Tensor& a, const Tensor& b);

// act(x (..., in) · weightᵀ (in, out) + bias (out)) -> (..., out), as nn.Linear
// (followed by nn.ReLU with Activation::relu). One GEMM whose epilogue adds the
// bias and applies the activation to each tile while it is in cache.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), Activation act = Activation::none);

// bf16 linear layers (ops/cpu/gemm_bf16.cpp): x, weight and bias bf16, sums in
// f32, output bf16. On the CPU linear() packs the weight on every call; a caller
// that runs the same weight many times (the compiled plan) packs it once here.
// On the GPU linear() calls cuda::linear_bf16 (cuBLAS reads the weight as
// stored: nothing to pack).
struct Bf16Weight {
  Tensor packed;  // bf16 (cpu::gemm_bf16_packed_elements(out, in))
  int64_t out_features = 0, in_features = 0;
};
Bf16Weight pack_bf16_weight(const Tensor& weight);  // weight (out, in) bf16 on the CPU
// act(x (..., in) · Wᵀ + bias) with x bf16; bias (out) of any floating dtype or
// undefined; the output bf16, or f32 with f32_out. Inference only.
Tensor linear_bf16(const Tensor& x, const Bf16Weight& w, const Tensor& bias = Tensor(),
                   Activation act = Activation::none, bool f32_out = false);

}  // namespace minidl
