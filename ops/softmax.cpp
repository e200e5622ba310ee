#include "ops/softmax.h"

#include "core/autograd.h"
#include "core/check.h"
#include "cuda/kernels.h"
#include "ops/cpu/kernels.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/factory.h"
#include "ops/reduce.h"

namespace minidl {

namespace {
// The row kernels work on (rows, cols) with the softmax dim last: t with `dim`
// moved last and made contiguous, and the inverse for a result in that layout.
Tensor dim_last(const Tensor& t, int64_t d) {
  return (d == t.dim() - 1 ? t : t.transpose(d, t.dim() - 1)).contiguous();
}
Tensor dim_back(const Tensor& t, int64_t d) {
  return d == t.dim() - 1 ? t : t.transpose(d, t.dim() - 1).contiguous();
}

// The row kernel on x; the result comes back contiguous in x's layout.
Tensor softmax_kernel(const Tensor& x, int64_t d, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  MINIDL_CHECK(is_floating(x.dtype()), "{}: expected a floating-point tensor, got {}", name, x.dtype());
  NoGradGuard no_grad;
  Tensor rows = dim_last(x, d);
  int64_t cols = x.dim() == 0 ? 1 : x.size(d);
  Tensor out = empty(rows.shape(), {.dtype = x.dtype(), .device = x.device()});
  if (out.numel() == 0) return dim_back(out, d);
  const TensorArg ya = out.reshape({-1, cols}).arg(), xa = rows.reshape({-1, cols}).arg();
  if (x.device().is_cuda()) cuda::softmax_rows(ya, xa, log);
  else cpu::softmax_rows(ya, xa, log);
  return dim_back(out, d);
}

// The backward row kernel, in the same layout.
Tensor softmax_backward_kernel(const Tensor& g_in, const Tensor& y_in, int64_t d, bool log) {
  Tensor g = dim_last(g_in.to(y_in.dtype()), d), y = dim_last(y_in, d);
  const int64_t cols = y_in.size(d);
  Tensor gx = empty(y.shape(), {.dtype = y.dtype(), .device = y.device()});
  if (gx.numel() == 0) return dim_back(gx, d);
  const TensorArg gxa = gx.reshape({-1, cols}).arg(), ga = g.reshape({-1, cols}).arg();
  const TensorArg ya = y.reshape({-1, cols}).arg();
  if (y.device().is_cuda()) cuda::softmax_rows_backward(gxa, ga, ya, log);
  else cpu::softmax_rows_backward(gxa, ga, ya, log);
  return dim_back(gx, d);
}
}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  int64_t d = x.dim() == 0 ? 0 : normalize_dim(dim, x.dim(), "softmax");
  Tensor y = softmax_kernel(x, d, /*log=*/false);
  // dx = y * (g - Σ g y), one fused pass per row
  record(y, "SoftmaxBackward", {x}, [y = saved(y), d](const Tensor& g, const NeedsGrad&) {
    if (y.dim() == 0) return grads{zeros_like(g)};
    return grads{softmax_backward_kernel(g, y, d, /*log=*/false)};
  });
  return y;
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  int64_t d = x.dim() == 0 ? 0 : normalize_dim(dim, x.dim(), "log_softmax");
  Tensor y = softmax_kernel(x, d, /*log=*/true);
  // dx = g - softmax * Σ g, one fused pass per row
  record(y, "LogSoftmaxBackward", {x}, [y = saved(y), d](const Tensor& g, const NeedsGrad&) {
    if (y.dim() == 0) return grads{zeros_like(g)};
    return grads{softmax_backward_kernel(g, y, d, /*log=*/true)};
  });
  return y;
}

}  // namespace minidl
