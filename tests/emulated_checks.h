// tests/emulated_checks.h — what the emulated-kernel tests (test_cuda_emulated*.cpp)
// compare with: the worst relative difference, and outputs poisoned with NaN.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "minidl.h"

namespace minidl::testing {

// max |a − b| / (1 + |b|) over the elements, NaN counting as a failure.
inline double worst(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to(DType::f64).to_vector<double>(), y = b.to(DType::f64).to_vector<double>();
  REQUIRE(x.size() == y.size());
  double w = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) || std::isnan(y[i])) return std::numeric_limits<double>::infinity();
    w = std::max(w, std::abs(x[i] - y[i]) / (1 + std::abs(y[i])));
  }
  return w;
}

// Filled with NaN: an element the kernel forgot to write fails the comparison.
inline Tensor poisoned(const Shape& shape, DType t) {
  return full(shape, std::numeric_limits<double>::quiet_NaN(), {.dtype = t});
}

}  // namespace minidl::testing
