// tests/gradcheck.h — compares autograd's gradients with central finite differences.
//
// For a function f of some f64 leaf tensors, gradcheck takes a fixed random
// weighting r of f's output and the scalar L = Σ f(inputs) ⊙ r, then checks for
// every element x_i of every input that requires grad:
//   dL/dx_i (backward)  ≈  (L(x_i + eps) - L(x_i - eps)) / (2 eps)
// A random r (rather than r = 1) catches gradients that are wrong but sum right.
// Inputs may be non-contiguous (transposed, sliced): elements are perturbed in
// place through their strides, so the op sees the same layout both ways.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "minidl.h"

namespace minidl::testing {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-5;
  bool report = true;  // false: only return the verdict (for testing gradcheck itself)
};

using TensorFn = std::function<Tensor(const std::vector<Tensor>&)>;

// An f64 leaf that requires grad, filled from N(0, 1) with the given seed.
inline Tensor leaf(const Shape& shape, uint64_t seed, double scale = 1.0, double shift = 0.0) {
  Generator gen(seed);
  Tensor t = add(mul(randn(shape, {.dtype = DType::f64}, gen), scalar_tensor(scale, {.dtype = DType::f64})),
                 scalar_tensor(shift, {.dtype = DType::f64}));
  return t.detach().requires_grad_(true);
}

// A leaf whose strides are not contiguous: the transpose of a fresh (cols, rows) tensor.
inline Tensor transposed_leaf(int64_t rows, int64_t cols, uint64_t seed) {
  return leaf({cols, rows}, seed).detach().t().detach().requires_grad_(true);
}

// A leaf that is every other row of a taller tensor (row stride 2 * cols).
inline Tensor strided_leaf(int64_t rows, int64_t cols, uint64_t seed) {
  return leaf({2 * rows, cols}, seed).detach().slice(0, 0, 2 * rows, 2).detach().requires_grad_(true);
}

// Element i (row-major) of a CPU f64 tensor, through its strides.
inline double& element(const Tensor& t, int64_t i) {
  int64_t offset = 0;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    offset += (i % t.size(d)) * t.stride(d);
    i /= t.size(d);
  }
  return t.data_ptr<double>()[offset];
}

inline bool gradcheck(const TensorFn& fn, const std::vector<Tensor>& inputs, GradcheckOptions o = {}) {
  for (const Tensor& x : inputs) {
    REQUIRE(x.dtype() == DType::f64);
    if (x.requires_grad()) x.set_grad(Tensor());
  }
  Tensor out = fn(inputs);
  REQUIRE(out.dtype() == DType::f64);
  Generator gen(1234);
  Tensor r = randn(out.shape(), {.dtype = DType::f64}, gen);
  sum(mul(out, r)).backward();

  auto loss = [&] {
    NoGradGuard no_grad;
    return sum(mul(fn(inputs), r)).item();
  };
  bool ok = true;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.requires_grad()) continue;
    if (!x.grad().defined()) {
      if (o.report) FAIL_CHECK("input " << k << " received no gradient");
      ok = false;
      continue;
    }
    REQUIRE(x.grad().shape() == x.shape());
    std::vector<double> analytic = x.grad().to_vector<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      double& v = element(x, i);
      const double saved = v;
      v = saved + o.eps;
      double plus = loss();
      v = saved - o.eps;
      double minus = loss();
      v = saved;
      double numeric = (plus - minus) / (2 * o.eps);
      if (!(std::abs(numeric - analytic[i]) <= o.atol + o.rtol * std::abs(numeric))) {
        if (o.report)
          FAIL_CHECK("input " << k << " element " << i << ": analytic " << analytic[i] << " vs numeric " << numeric);
        ok = false;
      }
    }
  }
  return ok;
}

}  // namespace minidl::testing
