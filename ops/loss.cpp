// ops/loss.cpp — losses composed from differentiable ops, so their gradients
// come from autograd with no hand-written backward to get wrong. The fused
// fast path is the fast-CPU issue's job.
#include "ops/loss.h"

#include "core/autograd.h"
#include "core/check.h"
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
  std::vector<int64_t> t = target.to_vector<int64_t>();
  for (size_t i = 0; i < t.size(); ++i)
    MINIDL_CHECK(t[i] == ignore_index || (t[i] >= 0 && t[i] < classes),
                 "{}: target {} (at position {}) is out of range for {} classes", op, t[i], i, classes);
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

Tensor cross_entropy(const Tensor& logits, const Tensor& target, const CrossEntropyOptions& o) {
  MINIDL_CHECK(o.label_smoothing >= 0 && o.label_smoothing <= 1,
               "cross_entropy: label_smoothing must be in [0, 1], got {}", o.label_smoothing);
  MINIDL_CHECK(logits.dim() >= 1, "cross_entropy: input must have a class dim, got a scalar");
  const int64_t class_dim = logits.dim() == 1 ? 0 : 1;
  Tensor log_probs = log_softmax(logits, class_dim);
  Tensor loss = nll("cross_entropy", log_probs, target, {o.weight, o.reduction, o.ignore_index});
  if (o.label_smoothing == 0) return loss;

  // The smoothing term: -Σ_c w_c log p_c per prediction, ignored targets zeroed.
  Flat f = flatten_classes("cross_entropy", log_probs, target);
  const int64_t C = f.log_probs.size(1);
  Tensor valid = ne(f.target, scalar_like(static_cast<double>(o.ignore_index), f.target));
  Tensor weighted = o.weight.defined() ? mul(f.log_probs, o.weight.to(logits.dtype())) : f.log_probs;
  Tensor smooth = where(valid, neg(sum(weighted, {1})), 0.0);
  Tensor smooth_reduced;
  switch (o.reduction) {
    case Reduction::none: smooth_reduced = smooth.reshape(f.target_shape); break;
    case Reduction::sum: smooth_reduced = sum(smooth); break;
    case Reduction::mean: {
      Tensor denom = valid.to(logits.dtype());
      if (o.weight.defined())
        denom = mul(denom, index_select(o.weight.to(logits.dtype()), 0, where(valid, f.target, 0.0)));
      smooth_reduced = div(sum(smooth), sum(denom));
      break;
    }
    case Reduction::batchmean: fail("cross_entropy: reduction 'batchmean' is only for kl_div");
  }
  const double eps = o.label_smoothing;
  return add(mul(loss, scalar_like(1 - eps, loss)), mul(smooth_reduced, scalar_like(eps / C, loss)));
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

Tensor mse_loss(const Tensor& input, const Tensor& target, Reduction reduction) {
  MINIDL_CHECK(input.shape() == target.shape(),
               "mse_loss: input {} and target {} differ in shape (broadcasting a loss is usually a bug; reshape "
               "explicitly)",
               input.shape(), target.shape());
  Tensor d = sub(input, target);
  return reduce("mse_loss", mul(d, d), reduction);
}

}  // namespace minidl
