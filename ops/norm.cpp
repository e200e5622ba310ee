// ops/norm.cpp — batch_norm and dropout, composed from differentiable ops.
#include "ops/norm.h"

#include "core/autograd.h"
#include "core/check.h"
#include "ops/elementwise.h"
#include "ops/factory.h"
#include "ops/reduce.h"

namespace minidl {

Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  MINIDL_CHECK(x.dim() >= 2, "batch_norm: input must be (N, C) or (N, C, *), got {}", x.shape());
  MINIDL_CHECK(is_floating(x.dtype()), "batch_norm: expected a floating-point input, got {}", x.dtype());
  const int64_t C = x.size(1);
  for (const Tensor* t : {&running_mean, &running_var, &weight, &bias})
    if (t->defined())
      MINIDL_CHECK(t->dim() == 1 && t->size(0) == C, "batch_norm: per-channel tensor {} does not match {} channels of {}",
                   t->shape(), C, x.shape());
  MINIDL_CHECK(training || (running_mean.defined() && running_var.defined()),
               "batch_norm: eval mode needs running_mean and running_var");

  // Per-channel tensors broadcast as (1, C, 1, ...).
  Shape channel_shape(x.dim(), 1);
  channel_shape[1] = C;
  Shape dims{0};
  for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  int64_t count = x.numel() / std::max<int64_t>(C, 1);

  Tensor mu, variance;
  if (training) {
    MINIDL_CHECK(count > 1, "batch_norm: expected more than 1 value per channel when training, got input {}",
                 x.shape());
    mu = mean(x, dims, true);
    variance = var(x, dims, /*correction=*/0, true);
    if (running_mean.defined() && running_var.defined()) {
      NoGradGuard no_grad;
      double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
      Tensor m = scalar_like(momentum, running_mean), keep = scalar_like(1 - momentum, running_mean);
      Tensor new_mean = add(mul(keep, running_mean), mul(m, mu.reshape({C}).to(running_mean.dtype())));
      Tensor new_var = add(mul(keep, running_var), mul(m, mul(variance.reshape({C}), scalar_like(unbias, variance))
                                                             .to(running_var.dtype())));
      Tensor(running_mean).copy_(new_mean);  // the buffers are updated in place
      Tensor(running_var).copy_(new_var);
    }
  } else {
    mu = running_mean.to(x.dtype()).reshape(channel_shape);
    variance = running_var.to(x.dtype()).reshape(channel_shape);
  }
  Tensor y = div(sub(x, mu), sqrt(add(variance, scalar_like(eps, variance))));
  if (weight.defined()) y = mul(y, weight.reshape(channel_shape));
  if (bias.defined()) y = add(y, bias.reshape(channel_shape));
  return y;
}

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  MINIDL_CHECK(p >= 0 && p <= 1, "dropout: probability must be in [0, 1], got {}", p);
  if (!training || p == 0) return x;
  if (p == 1) return mul(x, zeros_like(x));
  Tensor keep;
  {
    NoGradGuard no_grad;
    Tensor u = rand(x.shape(), {.dtype = is_floating(x.dtype()) ? x.dtype() : DType::f32, .device = x.device()}, gen);
    keep = div(ge(u, p).to(u.dtype()), scalar_like(1 - p, u));
  }
  return mul(x, keep);
}

}  // namespace minidl
