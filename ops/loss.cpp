// ops/loss.cpp — the losses. nll_loss, kl_div and mse_loss are composed from
// differentiable ops, so their gradients come from autograd with no hand-written
// backward to get wrong. cross_entropy, the loss every classifier step pays for,
// and kl_div_logits, the distillation KL, are each one fused row kernel forward
// and backward (ops/cpu/softmax.cpp); their tests hold them to the composed forms.
#include "ops/loss.h"

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "cuda/kernels.h"
#include "ops/cpu/kernels.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/factory.h"
#include "ops/index.h"
#include "ops/reduce.h"
#include "ops/softmax.h"

namespace minidl {

namespace {

const char* reduction_name(Reduction r) {
  switch (r) {
    case Reduction::none: return "none";
    case Reduction::mean: return "mean";
    case Reduction::sum: return "sum";
    case Reduction::batchmean: return "batchmean";
  }
  return "?";
}

// (N, C, d1, ...) -> (N*d1*..., C) and target (N, d1, ...) -> (N*d1*...): one row per prediction.
struct Flat {
  Tensor log_probs, target;
  Shape target_shape;
};

Flat flatten_classes(const char* op, const Tensor& log_probs, const Tensor& target) {
  MINIDL_CHECK(target.dtype() == DType::int64, "{}: target must hold int64 class indices, got {}", op, target.dtype());
  MINIDL_CHECK(log_probs.dim() >= 1, "{}: input must have a class dim, got a scalar", op);
  if (log_probs.dim() == 1) {
    MINIDL_CHECK(target.dim() == 0, "{}: for input {} (one sample) the target must be a scalar, got {}", op,
                 log_probs.shape(), target.shape());
    return {log_probs.unsqueeze(0), target.reshape({1}), {}};
  }
  Shape expected = log_probs.shape();
  expected.erase(expected.begin() + 1);
  MINIDL_CHECK(target.shape() == expected, "{}: target shape {} does not match input {} (expected {})", op,
               target.shape(), log_probs.shape(), expected);
  const int64_t C = log_probs.size(1);
  Shape classes_last{0};
  for (int64_t d = 2; d < log_probs.dim(); ++d) classes_last.push_back(d);
  classes_last.push_back(1);
  Tensor rows = log_probs.dim() == 2 ? log_probs : log_probs.permute(classes_last).reshape({-1, C});
  return {rows, target.reshape({-1}), target.shape()};
}

void check_targets(const char* op, const Tensor& target, int64_t classes, int64_t ignore_index) {
  const int64_t bad = first_out_of_range(target, classes, ignore_index);
  if (bad >= 0)
    fail("{}: target {} (at position {}) is out of range for {} classes", op, value_at(target, bad), bad, classes);
}

Tensor reduce(const char* op, const Tensor& per_item, Reduction reduction) {
  switch (reduction) {
    case Reduction::none: return per_item;
    case Reduction::sum: return sum(per_item);
    case Reduction::mean: return mean(per_item);
    case Reduction::batchmean: break;
  }
  fail("{}: reduction '{}' is not supported here (use none, mean or sum)", op, reduction_name(reduction));
}

// The shared core of nll_loss and cross_entropy, reporting errors under `op`.
Tensor nll(const char* op, const Tensor& log_probs, const Tensor& target, const NllLossOptions& o) {
  Flat f = flatten_classes(op, log_probs, target);
  const int64_t C = f.log_probs.size(1);
  check_targets(op, f.target, C, o.ignore_index);
  Tensor valid = ne(f.target, scalar_like(static_cast<double>(o.ignore_index), f.target));
  Tensor safe_target = where(valid, f.target, 0.0);  // ignored rows read class 0, then get weight 0
  Tensor picked = gather(f.log_probs, 1, safe_target.unsqueeze(1)).squeeze(1);
  Tensor w = valid.to(log_probs.dtype());
  if (o.weight.defined()) {
    MINIDL_CHECK(o.weight.dim() == 1 && o.weight.size(0) == C, "{}: weight {} must have one entry per class ({})", op,
                 o.weight.shape(), C);
    w = mul(w, index_select(o.weight.to(log_probs.dtype()), 0, safe_target));
  }
  Tensor losses = neg(mul(picked, w));
  switch (o.reduction) {
    case Reduction::none: return losses.reshape(f.target_shape);
    case Reduction::sum: return sum(losses);
    case Reduction::mean: return div(sum(losses), sum(w));
    case Reduction::batchmean: break;
  }
  fail("{}: reduction 'batchmean' is only for kl_div", op);
}

}  // namespace

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, const NllLossOptions& options) {
  return nll("nll_loss", log_probs, target, options);
}

// One fused node: the row kernel computes log-softmax, picks the target, applies
// weights, ignore_index and smoothing, and keeps each row's max and log Σ exp; the
// backward rebuilds p = exp(x − max − log_sum) from them in one more pass
// (see ops/cpu/softmax.cpp).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyOptions& o) {
  MINIDL_CHECK(o.label_smoothing >= 0 && o.label_smoothing <= 1,
               "cross_entropy: label_smoothing must be in [0, 1], got {}", o.label_smoothing);
  MINIDL_CHECK(logits.dim() >= 1, "cross_entropy: input must have a class dim, got a scalar");
  MINIDL_CHECK(is_floating(logits.dtype()), "cross_entropy: expected floating-point logits, got {}", logits.dtype());
  const Device device = common_device("cross_entropy", {logits, target, o.weight});
  if (o.reduction == Reduction::batchmean) fail("cross_entropy: reduction 'batchmean' is only for kl_div");
  // (N, C, d...) -> rows (N·d..., C) through differentiable views, so autograd maps
  // the rows' gradient back to the logits' layout.
  Flat f = flatten_classes("cross_entropy", logits, target);
  const int64_t C = f.log_probs.size(1), R = f.log_probs.size(0);
  Tensor rows = f.log_probs.contiguous();
  Tensor tgt = f.target.contiguous();
  Tensor weight;
  if (o.weight.defined()) {
    MINIDL_CHECK(o.weight.dim() == 1 && o.weight.size(0) == C,
                 "cross_entropy: weight {} must have one entry per class ({})", o.weight.shape(), C);
    weight = o.weight.detach().to(logits.dtype()).contiguous();
  }
  const CrossEntropyParams params{o.ignore_index, o.label_smoothing};
  Tensor out, denom, per_row, lse;
  {
    NoGradGuard no_grad;
    per_row = empty({R}, {.dtype = logits.dtype(), .device = logits.device()});
    lse = empty({R, 2}, {.dtype = logits.dtype(), .device = logits.device()});
    // The kernel checks the targets as it reads them and reports the first bad row.
    Tensor status = empty({1}, {.dtype = DType::int64, .device = device});
    const TensorArg wa = arg_or_null(weight);
    if (device.is_cuda()) cuda::cross_entropy_rows(per_row.arg(), lse.arg(), rows.arg(), tgt.arg(), wa, params, status.arg());
    else cpu::cross_entropy_rows(per_row.arg(), lse.arg(), rows.arg(), tgt.arg(), wa, params, status.arg());
    if (const int64_t bad = read_status(status); bad >= 0)
      fail("cross_entropy: target {} (at position {}) is out of range for {} classes", value_at(tgt, bad), bad, C);
    switch (o.reduction) {
      case Reduction::none: out = per_row.reshape(f.target_shape); break;
      case Reduction::sum: out = sum(per_row); break;
      default: {
        // mean: divided by the total weight of the rows that count (0/0 = NaN when none does).
        Tensor valid = ne(tgt, scalar_like(static_cast<double>(o.ignore_index), tgt)).to(logits.dtype());
        denom = weight.defined() ? sum(mul(valid, index_select(weight, 0, where(ne(valid, scalar_like(0.0, valid)), tgt, 0.0))))
                                 : sum(valid);
        out = div(sum(per_row), denom);
      }
    }
  }
  record(out, "CrossEntropyBackward", {rows},
           [rows = saved(rows), lse, tgt = saved(tgt), weight, denom, params, reduction = o.reduction](const Tensor& g,
                                                                                             const NeedsGrad&) {
             // The upstream gradient per row: g itself (none), or one scalar for every row.
             Tensor scale = reduction == Reduction::none ? g.reshape({-1}).to(rows.dtype()).contiguous()
                          : reduction == Reduction::sum  ? g.to(rows.dtype()).contiguous()
                                                         : div(g.to(rows.dtype()), denom).contiguous();
             Tensor gx = empty(rows.shape(), {.dtype = rows.dtype(), .device = rows.device()});
             if (rows.device().is_cuda())
               cuda::cross_entropy_rows_backward(gx.arg(), scale.arg(), rows.arg(), lse.arg(), tgt.arg(),
                                                 arg_or_null(weight), params);
             else
               cpu::cross_entropy_rows_backward(gx.arg(), scale.arg(), rows.arg(), lse.arg(), tgt.arg(),
                                                arg_or_null(weight), params);
             return grads{gx};
           });
  return out;
}

Tensor kl_div(const Tensor& input, const Tensor& target, Reduction reduction, bool log_target) {
  MINIDL_CHECK(input.shape() == target.shape(), "kl_div: input {} and target {} must have the same shape",
               input.shape(), target.shape());
  MINIDL_CHECK(is_floating(input.dtype()) && is_floating(target.dtype()),
               "kl_div: expected floating-point tensors, got {} and {}", input.dtype(), target.dtype());
  Tensor pointwise = log_target ? mul(exp(target), sub(target, input)) : sub(xlogy(target, target), mul(target, input));
  if (reduction == Reduction::batchmean)
    return input.dim() == 0 ? sum(pointwise) : div(sum(pointwise), scalar_like(static_cast<double>(input.size(0)), input));
  return reduce("kl_div", pointwise, reduction);
}

// One fused node (see ops/cpu/softmax.cpp); its tests hold it to the composed form.
Tensor kl_div_logits(const Tensor& student_logits, const Tensor& teacher_logits, double temperature,
                     Reduction reduction) {
  MINIDL_CHECK(student_logits.dim() == 2, "kl_div_logits: expected (N, C) student logits, got {}",
               student_logits.shape());
  MINIDL_CHECK(student_logits.shape() == teacher_logits.shape(),
               "kl_div_logits: student logits {} and teacher logits {} must have the same shape",
               student_logits.shape(), teacher_logits.shape());
  MINIDL_CHECK(is_floating(student_logits.dtype()) && student_logits.dtype() == teacher_logits.dtype(),
               "kl_div_logits: expected floating-point logits of one dtype, got {} and {}", student_logits.dtype(),
               teacher_logits.dtype());
  MINIDL_CHECK(temperature > 0 && std::isfinite(temperature), "kl_div_logits: temperature must be > 0, got {}",
               temperature);
  const Device device = common_device("kl_div_logits", {student_logits, teacher_logits});
  const int64_t N = student_logits.size(0), C = student_logits.size(1);
  Tensor s = student_logits.contiguous(), t = teacher_logits.contiguous();
  // sum and none divide by 1; batchmean by the batch; mean by every element, as kl_div's.
  const double divisor = reduction == Reduction::batchmean ? double(N) : reduction == Reduction::mean ? double(N * C) : 1.0;
  Tensor per_row, lse, out;
  {
    NoGradGuard no_grad;
    per_row = empty({N}, {.dtype = s.dtype(), .device = s.device()});
    lse = empty({N, 4}, {.dtype = s.dtype(), .device = s.device()});
    if (device.is_cuda()) cuda::kl_div_rows(per_row.arg(), lse.arg(), s.arg(), t.arg(), temperature);
    else cpu::kl_div_rows(per_row.arg(), lse.arg(), s.arg(), t.arg(), temperature);
    out = reduction == Reduction::none ? per_row : div(sum(per_row), scalar_like(divisor, per_row));
  }
  // The upstream gradient becomes one scale per row: g itself (none), or g over the divisor.
  record(out, "KlDivLogitsBackward", {s, t},
         [s = saved(s), t = saved(t), lse, per_row, temperature, reduction, divisor](const Tensor& g,
                                                                                          const NeedsGrad& needs) {
           Tensor scale = reduction == Reduction::none ? g.to(s.dtype()).contiguous()
                                                       : div(g.to(s.dtype()), scalar_like(divisor, s)).contiguous();
           Tensor gs = needs[0] ? empty(s.shape(), {.dtype = s.dtype(), .device = s.device()}) : Tensor();
           Tensor gt = needs[1] ? empty(t.shape(), {.dtype = t.dtype(), .device = t.device()}) : Tensor();
           if (s.device().is_cuda())
             cuda::kl_div_rows_backward(arg_or_null(gs), arg_or_null(gt), scale.arg(), s.arg(), t.arg(), lse.arg(),
                                        per_row.arg(), temperature);
           else
             cpu::kl_div_rows_backward(arg_or_null(gs), arg_or_null(gt), scale.arg(), s.arg(), t.arg(), lse.arg(),
                                       per_row.arg(), temperature);
           return grads{gs, gt};
         });
  return out;
}

DistillationLoss distillation_loss_terms(const Tensor& student_logits, const Tensor& teacher_logits,
                                         const Tensor& target, const DistillationOptions& o) {
  const char* op = "distillation_loss";
  MINIDL_CHECK(student_logits.dim() == 2, "{}: expected (N, C) student logits, got {}", op, student_logits.shape());
  MINIDL_CHECK(student_logits.shape() == teacher_logits.shape(),
               "{}: student logits {} and teacher logits {} differ: teacher and student must have the same number "
               "of classes",
               op, student_logits.shape(), teacher_logits.shape());
  MINIDL_CHECK(is_floating(student_logits.dtype()) && student_logits.dtype() == teacher_logits.dtype(),
               "{}: expected floating-point logits of one dtype, got {} and {}", op, student_logits.dtype(),
               teacher_logits.dtype());
  MINIDL_CHECK(target.dtype() == DType::int64 && target.dim() == 1 && target.size(0) == student_logits.size(0),
               "{}: target must be (N) = ({}) int64 class indices, got {} {}", op, student_logits.size(0),
               target.shape(), target.dtype());
  MINIDL_CHECK(o.temperature > 0 && std::isfinite(o.temperature), "{}: temperature must be > 0, got {}", op,
               o.temperature);
  MINIDL_CHECK(o.alpha >= 0 && o.alpha <= 1, "{}: alpha must be in [0, 1], got {}", op, o.alpha);
  MINIDL_CHECK(!(teacher_logits.requires_grad() && grad_mode_enabled()),
               "{}: the teacher's logits require grad; the teacher is frozen: compute them under NoGradGuard "
               "(or pass teacher.detach())",
               op);
  const Device device = common_device(op, {student_logits, teacher_logits, target});
  const int64_t N = student_logits.size(0), C = student_logits.size(1);
  const double T2 = o.temperature * o.temperature;
  Tensor s = student_logits.contiguous(), t = teacher_logits.detach().contiguous(), y = target.contiguous();
  const bool wants_grad = s.requires_grad() && grad_mode_enabled();
  Tensor kl, ce, loss, grad;
  {
    NoGradGuard no_grad;
    const TensorOptions like_s{.dtype = s.dtype(), .device = device};
    Tensor kl_rows = empty({N}, like_s), ce_rows = empty({N}, like_s);
    if (wants_grad) grad = empty({N, C}, like_s);
    Tensor status = empty({1}, {.dtype = DType::int64, .device = device});
    const DistillationParams params{o.temperature, o.alpha, N > 0 ? 1.0 / static_cast<double>(N) : 0.0};
    if (device.is_cuda())
      cuda::distillation_rows(kl_rows.arg(), ce_rows.arg(), arg_or_null(grad), s.arg(), t.arg(), y.arg(), params,
                              status.arg());
    else
      cpu::distillation_rows(kl_rows.arg(), ce_rows.arg(), arg_or_null(grad), s.arg(), t.arg(), y.arg(), params,
                             status.arg());
    if (const int64_t bad = read_status(status); bad >= 0)
      fail("{}: target {} (at position {}) is out of range for {} classes", op, value_at(y, bad), bad, C);
    const Tensor batch = scalar_like(static_cast<double>(N), kl_rows);
    kl = div(sum(kl_rows), batch);
    ce = div(sum(ce_rows), batch);
    loss = add(mul(kl, scalar_like(o.alpha * T2, kl)), mul(ce, scalar_like(1 - o.alpha, ce)));
  }
  if (wants_grad)
    record(loss, "DistillationLossBackward", {s}, [grad](const Tensor& g, const NeedsGrad&) {
      // The gradient was computed with the forward; the upstream g (1 for a loss) scales it.
      if (g.device().is_cpu() && g.item() == 1.0) return grads{grad};
      return grads{mul(grad, g.to(grad.dtype()))};
    });
  return {loss, ce, kl};
}

Tensor distillation_loss(const Tensor& student_logits, const Tensor& teacher_logits, const Tensor& target,
                         const DistillationOptions& options) {
  return distillation_loss_terms(student_logits, teacher_logits, target, options).loss;
}

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  MINIDL_CHECK(input.shape() == target.shape(),
               "mse_loss: input {} and target {} differ in shape (broadcasting a loss is usually a bug; reshape "
               "explicitly)",
               input.shape(), target.shape());
  Tensor d = sub(input, target);
  return reduce("mse_loss", mul(d, d), reduction);
}

}  // namespace minidl
