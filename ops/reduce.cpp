// ops/reduce.cpp — reductions: move the reduced dims last, run one row kernel.
#include "ops/reduce.h"

#include <algorithm>
#include <numeric>

#include "core/autograd.h"
#include "core/check.h"
#include "cuda/kernels.h"
#include "ops/cpu/kernels.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/factory.h"
#include "ops/index.h"

namespace minidl {

namespace {

// Sorted, unique, non-negative dims; empty means all dims.
Shape normalize_dims(const char* op, const Shape& dims, int64_t ndim) {
  Shape out;
  if (dims.empty()) {
    out.resize(ndim);
    std::iota(out.begin(), out.end(), 0);
    return out;
  }
  for (int64_t d : dims) out.push_back(normalize_dim(d, ndim, op));
  std::sort(out.begin(), out.end());
  MINIDL_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), "{}: dim repeats in {}", op, dims);
  return out;
}

Shape reduced_shape(const Shape& shape, const Shape& dims, bool keepdim) {
  Shape out;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    bool reduced = std::binary_search(dims.begin(), dims.end(), d);
    if (!reduced) out.push_back(shape[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

struct Reduced {
  Tensor values, indices;
};

// The kernel call: x viewed as (kept, reduced) rows; no autograd here.
Reduced reduce_kernel(ReduceOp op, const char* name, const Tensor& x, const Shape& dims, bool keepdim,
                      double correction = 0, bool want_indices = false) {
  NoGradGuard no_grad;
  Shape perm, kept_shape;
  int64_t rows = 1, cols = 1;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (!std::binary_search(dims.begin(), dims.end(), d)) perm.push_back(d), rows *= x.size(d);
  for (int64_t d : dims) perm.push_back(d), cols *= x.size(d);
  MINIDL_CHECK(cols > 0 || op == ReduceOp::sum || op == ReduceOp::logsumexp,
               "{}: cannot reduce over a zero-size dimension (input shape {}, dims {})", name, x.shape(), dims);
  Tensor rows_view = x.permute(perm).contiguous().reshape({rows, cols});
  Shape out_shape = reduced_shape(x.shape(), dims, keepdim);
  Tensor values = empty({rows}, {.dtype = x.dtype(), .device = x.device()});
  Tensor indices = want_indices ? empty({rows}, {.dtype = DType::int64, .device = x.device()}) : Tensor();
  const TensorArg ia = want_indices ? indices.arg() : TensorArg{};
  if (x.device().is_cuda()) cuda::reduce_rows(op, values.arg(), ia, rows_view.arg(), correction);
  else cpu::reduce_rows(op, values.arg(), ia, rows_view.arg(), correction);
  return {values.reshape(out_shape), want_indices ? indices.reshape(out_shape) : Tensor()};
}

// g of the reduced shape, unsqueezed and expanded back to the input's shape.
Tensor expand_back(const Tensor& g, const Shape& input_shape, const Shape& dims, bool keepdim) {
  Tensor r = keepdim ? g : g.reshape(reduced_shape(input_shape, dims, true));
  return r.expand(input_shape);
}

}  // namespace

// ---------------------------------------------------------------- sum, mean

Tensor sum(const Tensor& x, const Shape& dims_in, bool keepdim) {
  Shape dims = normalize_dims("sum", dims_in, x.dim());
  Tensor in = x.dtype() == DType::boolean ? x.to(DType::int64) : x;
  Tensor out = reduce_kernel(ReduceOp::sum, "sum", in, dims, keepdim).values;
  record(out, "SumBackward", {in}, [shape = in.shape(), dims, keepdim](const Tensor& g, const NeedsGrad&) {
    return grads{expand_back(g, shape, dims, keepdim)};
  });
  return out;
}
Tensor sum(const Tensor& x) { return sum(x, {}); }

Tensor mean(const Tensor& x, const Shape& dims_in, bool keepdim) {
  MINIDL_CHECK(is_floating(x.dtype()), "mean: expected a floating-point tensor, got {}; convert with .to(DType::f32)",
               x.dtype());
  Shape dims = normalize_dims("mean", dims_in, x.dim());
  int64_t count = 1;
  for (int64_t d : dims) count *= x.size(d);
  return div(sum(x, dims, keepdim), scalar_like(static_cast<double>(count), x));
}
Tensor mean(const Tensor& x) { return mean(x, {}); }

// ---------------------------------------------------------------- var, logsumexp

Tensor var(const Tensor& x, const Shape& dims_in, double correction, bool keepdim) {
  MINIDL_CHECK(is_floating(x.dtype()), "var: expected a floating-point tensor, got {}", x.dtype());
  Shape dims = normalize_dims("var", dims_in, x.dim());
  Tensor out = reduce_kernel(ReduceOp::var, "var", x, dims, keepdim, correction).values;
  // d var / dx_i = 2 (x_i - mean) / (n - correction)
  record(out, "VarBackward", {x}, [x = saved(x), dims, correction, keepdim](const Tensor& g, const NeedsGrad&) {
    int64_t n = 1;
    for (int64_t d : dims) n *= x.size(d);
    Tensor centered = sub(x, mean(x, dims, true));
    Tensor scale = scalar_like(2.0 / (static_cast<double>(n) - correction), x);
    return grads{mul(expand_back(g, x.shape(), dims, keepdim), mul(centered, scale))};
  });
  return out;
}

Tensor logsumexp(const Tensor& x, const Shape& dims_in, bool keepdim) {
  MINIDL_CHECK(is_floating(x.dtype()), "logsumexp: expected a floating-point tensor, got {}", x.dtype());
  Shape dims = normalize_dims("logsumexp", dims_in, x.dim());
  Tensor out = reduce_kernel(ReduceOp::logsumexp, "logsumexp", x, dims, keepdim).values;
  // d/dx_i = exp(x_i - lse): the softmax
  record(out, "LogsumexpBackward", {x},
         [x = saved(x), out = saved(out), dims, keepdim](const Tensor& g, const NeedsGrad&) {
           Tensor lse = expand_back(out, x.shape(), dims, keepdim);
           return grads{mul(expand_back(g, x.shape(), dims, keepdim), exp(sub(x, lse)))};
         });
  return out;
}

// ---------------------------------------------------------------- max, min, arg*

namespace {
ValuesIndices extreme_along(ReduceOp op, const char* name, const Tensor& x, int64_t dim, bool keepdim) {
  int64_t d = normalize_dim(dim, x.dim(), name);
  Shape dims = x.dim() == 0 ? Shape{} : Shape{d};
  Reduced r = reduce_kernel(op, name, x, dims, keepdim, 0, /*want_indices=*/true);
  // The gradient flows to the position each value came from.
  record(r.values, op == ReduceOp::max ? "MaxBackward" : "MinBackward", {x},
         [shape = x.shape(), idx = r.indices, d, keepdim, dims](const Tensor& g, const NeedsGrad&) {
           if (shape.empty()) return grads{g};
           Tensor gk = keepdim ? g : g.unsqueeze(d);
           Tensor ik = keepdim ? idx : idx.unsqueeze(d);
           return grads{scatter_add(zeros(shape, {.dtype = g.dtype(), .device = g.device()}), d, ik, gk)};
         });
  return {r.values, r.indices};
}

Tensor extreme_all(ReduceOp op, const char* name, const Tensor& x) {
  Shape dims = normalize_dims(name, {}, x.dim());
  Tensor out = reduce_kernel(op, name, x, dims, false).values;
  record(out, op == ReduceOp::max ? "MaxAllBackward" : "MinAllBackward", {x},
         [x = saved(x), out = saved(out)](const Tensor& g, const NeedsGrad&) {
           Tensor hit = eq(x, out).to(g.dtype());
           return grads{mul(div(hit, sum(hit)), g)};
         });
  return out;
}
}  // namespace

ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) {
  return extreme_along(ReduceOp::max, "max", x, dim, keepdim);
}
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) {
  return extreme_along(ReduceOp::min, "min", x, dim, keepdim);
}
Tensor max(const Tensor& x) { return extreme_all(ReduceOp::max, "max", x); }
Tensor min(const Tensor& x) { return extreme_all(ReduceOp::min, "min", x); }

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard no_grad;
  return max(x, dim, keepdim).indices;
}
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  NoGradGuard no_grad;
  return min(x, dim, keepdim).indices;
}
Tensor argmax(const Tensor& x) {
  NoGradGuard no_grad;
  return argmax(x.reshape({-1}), 0);
}

// ---------------------------------------------------------------- sum_to

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  const int64_t lead = grad.dim() - static_cast<int64_t>(shape.size());
  MINIDL_CHECK(lead >= 0, "sum_to: cannot sum shape {} to the larger shape {}", grad.shape(), shape);
  Shape dims;
  for (int64_t d = 0; d < grad.dim(); ++d) {
    bool leading = d < lead;
    if (leading || (shape[d - lead] == 1 && grad.size(d) != 1)) dims.push_back(d);
    else
      MINIDL_CHECK(shape[d - lead] == grad.size(d), "sum_to: shape {} does not broadcast to {}", shape, grad.shape());
  }
  Tensor r = dims.empty() ? grad : sum(grad, dims, /*keepdim=*/true);
  return r.reshape(shape);
}

}  // namespace minidl
