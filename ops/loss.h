// ops/loss.h — losses with PyTorch's semantics: nll_loss, cross_entropy, kl_div, mse_loss.
#pragma once

#include "core/tensor.h"

namespace minidl {

enum class Reduction { none, mean, sum, batchmean };

struct NllLossOptions {
  Tensor weight{};                // (C) per-class weights, or undefined
  Reduction reduction = Reduction::mean;
  int64_t ignore_index = -100;    // targets equal to this contribute nothing
};

// log_probs (N, C) or (N, C, d1, ...) or (C); target (N) / (N, d1, ...) / () int64
// class indices. mean divides by the summed weights of the non-ignored targets.
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const NllLossOptions& options = {});

struct CrossEntropyOptions {
  Tensor weight{};
  Reduction reduction = Reduction::mean;
  int64_t ignore_index = -100;
  double label_smoothing = 0;     // in [0, 1]: mixes the target with the uniform distribution
};

// nll_loss(log_softmax(logits, 1), target), with optional label smoothing:
// (1 - ε) nll + ε/C Σ_c -w_c log p_c. Finite and exact for logits of ±1e4.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyOptions& options = {});

// torch.nn.functional.kl_div: `input` holds log-probabilities; `target` holds
// probabilities (or log-probabilities when log_target). Pointwise
//   target (log target - input),   0 where target == 0.
// batchmean divides the sum by input.size(0): the true KL divergence per sample.
Tensor kl_div(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean,
              bool log_target = false);

// kl_div(log_softmax(student_logits / T, 1), softmax(teacher_logits / T, 1), reduction)
// for (N, C) logits, fused into one row pass forward and one backward: the
// distillation loss's KL(p_teacher ‖ p_student) at temperature T, without the
// four intermediate (N, C) tensors of the composed form. Both inputs get
// gradients (a frozen teacher is simply a tensor that does not require them).
// The caller multiplies by T² when it wants Hinton's scaling.
Tensor kl_div_logits(const Tensor& student_logits, const Tensor& teacher_logits, double temperature = 1.0,
                     Reduction reduction = Reduction::batchmean);

// (input - target)², reduced. Shapes must match exactly (broadcasting here is usually a bug).
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean);

}  // namespace minidl
