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

}  // namespace minidl
