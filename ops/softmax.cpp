#include "ops/softmax.h"

#include "core/autograd.h"
#include "core/check.h"
#include "ops/cpu/kernels.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/factory.h"
#include "ops/reduce.h"

namespace minidl {

namespace {
// The row kernel on x with `dim` moved last; the result comes back contiguous in x's layout.
Tensor softmax_kernel(const Tensor& x, int64_t d, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  require_cpu(name, x.device());
  MINIDL_CHECK(is_floating(x.dtype()), "{}: expected a floating-point tensor, got {}", name, x.dtype());
  NoGradGuard no_grad;
  const int64_t last = x.dim() - 1;
  Tensor rows = (d == last ? x : x.transpose(d, last)).contiguous();
  int64_t cols = x.dim() == 0 ? 1 : x.size(d);
  Tensor out = empty(rows.shape(), {.dtype = x.dtype(), .device = x.device()});
  if (out.numel() > 0) cpu::softmax_rows(out.reshape({-1, cols}).arg(), rows.reshape({-1, cols}).arg(), log);
  return d == last ? out : out.transpose(d, last).contiguous();
}
}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  int64_t d = x.dim() == 0 ? 0 : normalize_dim(dim, x.dim(), "softmax");
  Tensor y = softmax_kernel(x, d, /*log=*/false);
  // dx = y * (g - Σ g y)
  record(y, "SoftmaxBackward", {x}, [y = y.detach(), d](const Tensor& g, const NeedsGrad&) {
    if (y.dim() == 0) return grads{zeros_like(g)};
    return grads{mul(y, sub(g, sum(mul(g, y), {d}, true)))};
  });
  return y;
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  int64_t d = x.dim() == 0 ? 0 : normalize_dim(dim, x.dim(), "log_softmax");
  Tensor y = softmax_kernel(x, d, /*log=*/true);
  // dx = g - softmax * Σ g
  record(y, "LogSoftmaxBackward", {x}, [y = y.detach(), d](const Tensor& g, const NeedsGrad&) {
    if (y.dim() == 0) return grads{zeros_like(g)};
    return grads{sub(g, mul(exp(y), sum(g, {d}, true)))};
  });
  return y;
}

}  // namespace minidl
