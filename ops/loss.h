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

// Knowledge distillation (Hinton et al., 2015): the student learns from the
// teacher's softened predictions and from the hard labels,
//   loss = α · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − α) · CE(student, target),
// the KL summed over classes and averaged over the batch ("batchmean"), CE
// averaged over the batch. T² keeps the soft term's gradient, which shrinks as
// 1/T², on the scale of the hard term's. Logits (N, C), target (N) int64.
//
// One fused CPU kernel does the forward and the gradient in a single pass over
// each row (ops/cpu/softmax.cpp), with no (N, C) temporaries; backward only
// scales the gradient it kept. The teacher gets no gradient: its logits must not
// require one (compute them under NoGradGuard). On CUDA it is composed from
// kl_div_logits and cross_entropy until the fused CUDA twin exists.
struct DistillationOptions {
  double temperature = 4.0;  // T > 0
  double alpha = 0.7;        // weight of the soft (teacher) term, in [0, 1]
};
struct DistillationLoss {
  Tensor loss;  // () the loss above, differentiable in the student logits
  Tensor ce;    // () CE(student, target), batch mean (no gradient)
  Tensor kl;    // () KL(p_teacher ‖ p_student) at T, batchmean, without T² (no gradient)
};
DistillationLoss distillation_loss_terms(const Tensor& student_logits, const Tensor& teacher_logits,
                                         const Tensor& target, const DistillationOptions& options = {});
Tensor distillation_loss(const Tensor& student_logits, const Tensor& teacher_logits, const Tensor& target,
                         const DistillationOptions& options = {});

// (input - target)², reduced. Shapes must match exactly (broadcasting here is usually a bug).
Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction = Reduction::mean);

}  // namespace minidl
