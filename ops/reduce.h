// ops/reduce.h — reductions over any set of dims, keepdim or not, differentiable.
//
//   sum(x)                      -> () scalar
//   sum(x, {0, 2}, true)        -> (1, C, 1) for x (N, C, L)
//   max(x, 1) -> {values (N), indices (N) int64}
#pragma once

#include "core/tensor.h"

namespace minidl {

Tensor sum(const Tensor& x);
Tensor sum(const Tensor& x, const Shape& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const Shape& dims, bool keepdim = false);
// correction = 1: the unbiased estimator (PyTorch's default); 0: the population variance.
// One signature, dims first (empty: all dims): with a second overload var(x, double),
// var(x, {1}) picked it — a braced 1 converts to double more readily than to Shape —
// and silently reduced over everything with correction 1.
Tensor var(const Tensor& x, const Shape& dims = {}, double correction = 1, bool keepdim = false);
Tensor logsumexp(const Tensor& x, const Shape& dims, bool keepdim = false);

struct ValuesIndices {
  Tensor values;
  Tensor indices;  // int64
};
// Over one dim: the extreme values and where they are (first occurrence on ties).
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim = false);
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim = false);
// Over everything: a scalar; the gradient is shared evenly between tied maxima.
Tensor max(const Tensor& x);
Tensor min(const Tensor& x);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x);  // index into the flattened tensor

// Sums `grad` down to `shape` (the inverse of broadcasting): every binary op's
// backward goes through here.
Tensor sum_to(const Tensor& grad, const Shape& shape);

}  // namespace minidl
