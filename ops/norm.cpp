// ops/norm.cpp — batch_norm (a fused kernel with its own backward, see
// ops/cpu/norm.cpp) and dropout (a counter-based mask kernel, then mul).
#include "ops/norm.h"

#include "core/autograd.h"
#include "core/check.h"
#include "cuda/kernels.h"
#include "ops/cpu/kernels.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/factory.h"
#include "ops/reduce.h"

namespace minidl {

Tensor batch_norm(const Tensor& x_in, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum, double eps) {
  if (x_in.dtype() == DType::bf16) {
    MINIDL_CHECK(!training,
                 "batch_norm: bf16 in training mode is not supported (its statistics update in f32); "
                 "train in f32, then convert the model for inference");
    return bf16_via_f32(
        "batch_norm", {x_in, running_mean, running_var, weight, bias},
        [&](const std::vector<Tensor>& t) { return batch_norm(t[0], t[1], t[2], t[3], t[4], false, momentum, eps); });
  }
  MINIDL_CHECK(x_in.dim() >= 2, "batch_norm: input must be (N, C) or (N, C, *), got {}", x_in.shape());
  MINIDL_CHECK(x_in.dtype() == DType::f32 || x_in.dtype() == DType::f64, "batch_norm: expected f32 or f64, got {}",
               x_in.dtype());
  const Device device = common_device("batch_norm", {x_in, running_mean, running_var, weight, bias});
  const int64_t N = x_in.size(0), C = x_in.size(1);
  for (const Tensor* t : {&running_mean, &running_var, &weight, &bias})
    if (t->defined())
      MINIDL_CHECK(t->dim() == 1 && t->size(0) == C,
                   "batch_norm: per-channel tensor {} does not match {} channels of {}", t->shape(), C, x_in.shape());
  MINIDL_CHECK(training || (running_mean.defined() && running_var.defined()),
               "batch_norm: eval mode needs running_mean and running_var");
  const int64_t L = C == 0 ? 0 : x_in.numel() / std::max<int64_t>(N * C, 1);
  const int64_t count = N * L;  // values per channel

  // The kernels see x as (N, C, L) contiguous and per-channel tensors in x's dtype.
  Tensor x = x_in.contiguous();
  const TensorOptions opts{.dtype = x.dtype(), .device = device};
  auto per_channel = [&](const Tensor& t) { return t.defined() ? t.detach().to(x.dtype()).contiguous() : Tensor(); };
  Tensor w = per_channel(weight), b = per_channel(bias);
  Tensor mean, invstd;
  {
    NoGradGuard no_grad;
    if (training) {
      MINIDL_CHECK(count > 1, "batch_norm: expected more than 1 value per channel when training, got input {}",
                   x_in.shape());
      mean = empty({C}, opts);
      Tensor var = empty({C}, opts);
      const TensorArg xa = x.reshape({N, C, L}).arg();
      if (device.is_cuda())
        cuda::batch_norm_stats(mean.arg(), var.arg(), xa);
      else
        cpu::batch_norm_stats(mean.arg(), var.arg(), xa);
      invstd = div(ones({C}, opts), sqrt(add(var, eps)));
      if (running_mean.defined() && running_var.defined()) {
        // running = (1 - momentum) · running + momentum · batch, the variance unbiased
        const double unbias = static_cast<double>(count) / static_cast<double>(count - 1);
        Tensor(running_mean).copy_(add(mul(running_mean, 1 - momentum), mul(mean.to(running_mean.dtype()), momentum)));
        Tensor(running_var)
            .copy_(add(mul(running_var, 1 - momentum), mul(var.to(running_var.dtype()), momentum * unbias)));
      }
    } else {
      mean = running_mean.to(x.dtype()).clone();  // a snapshot: the buffer may change before backward
      invstd = div(ones({C}, opts), sqrt(add(running_var.to(x.dtype()), eps)));
    }
  }
  Tensor y = empty(x.shape(), opts);
  const TensorArg ya = y.reshape({N, C, L}).arg(), xa = x.reshape({N, C, L}).arg();
  if (device.is_cuda())
    cuda::batch_norm_apply(ya, xa, mean.arg(), invstd.arg(), arg_or_null(w), arg_or_null(b));
  else
    cpu::batch_norm_apply(ya, xa, mean.arg(), invstd.arg(), arg_or_null(w), arg_or_null(b));

  record(y, "BatchNormBackward", {x, weight, bias},
         [x = saved(x), mean, invstd, w = saved(w), training, N, C, L](const Tensor& g_in, const NeedsGrad& needs) {
           Tensor g = g_in.contiguous();
           const TensorOptions o{.dtype = x.dtype(), .device = x.device()};
           Tensor gx = needs[0] ? empty(x.shape(), o) : Tensor();
           Tensor gw = needs[1] ? empty({C}, o) : Tensor();
           Tensor gb = needs[2] ? empty({C}, o) : Tensor();
           const TensorArg gxa = arg_or_null(gx.defined() ? gx.reshape({N, C, L}) : Tensor());
           const TensorArg ga = g.reshape({N, C, L}).arg(), xa = x.reshape({N, C, L}).arg();
           if (x.device().is_cuda())
             cuda::batch_norm_backward(gxa, arg_or_null(gw), arg_or_null(gb), ga, xa, mean.arg(), invstd.arg(),
                                       arg_or_null(w), training);
           else
             cpu::batch_norm_backward(gxa, arg_or_null(gw), arg_or_null(gb), ga, xa, mean.arg(), invstd.arg(),
                                      arg_or_null(w), training);
           return grads{gx, gw, gb};
         });
  return y;
}

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  MINIDL_CHECK(p >= 0 && p <= 1, "dropout: probability must be in [0, 1], got {}", p);
  if (!training || p == 0) return x;
  if (p == 1) return mul(x, zeros_like(x));
  MINIDL_CHECK(is_floating(x.dtype()), "dropout: expected a floating tensor, got {}", x.dtype());
  // The mask, 0 or 1/(1 − p) per element, is a pure function of one key drawn
  // from `gen` and the element's index (core/philox.h): the kernel computes it
  // where the tensor lives — no host draw, no upload — and the CPU and the GPU
  // draw the same mask from the same generator. The gradient flows through mul.
  Tensor keep = empty(x.shape(), {.dtype = x.dtype(), .device = x.device()});
  const uint64_t key = gen.next_u64();
  if (x.device().is_cuda())
    cuda::dropout_mask(keep.arg(), p, key);
  else
    cpu::dropout_mask(keep.arg(), p, key);
  return mul(x, keep);
}

}  // namespace minidl
