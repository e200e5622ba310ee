// ops/norm.h — batch normalisation and dropout.
#pragma once

#include "core/generator.h"
#include "core/tensor.h"

namespace minidl {

// x (N, C) or (N, C, *). Training: normalise with the batch's mean and biased
// variance, and update running_mean / running_var in place (momentum, unbiased
// variance), as torch.nn.functional.batch_norm. Eval: use the running statistics.
// running_* may be undefined in training (no tracking); weight and bias may be undefined.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);

// Zeroes each element with probability p and scales the rest by 1/(1-p) when
// training; the identity otherwise. The mask comes from one 64-bit key drawn
// from `gen` (seeded) and is the same on the CPU and the GPU. x floating.
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen = default_generator());

}  // namespace minidl
