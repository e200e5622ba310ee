// ops/factory.h — tensor factories: empty, zeros, ones, full, arange, eye,
// rand / randn / randint from a seeded Generator, and tensors from host data.
//
//   Tensor w = randn({784, 512}, {.requires_grad = true});
//   Tensor x = from_vector<float>({1, 2, 3, 4}, {2, 2});
#pragma once

#include <vector>

#include "core/generator.h"
#include "core/tensor.h"

namespace minidl {

Tensor empty(const Shape& shape, TensorOptions options = {});
Tensor zeros(const Shape& shape, TensorOptions options = {});
Tensor ones(const Shape& shape, TensorOptions options = {});
Tensor full(const Shape& shape, double value, TensorOptions options = {});
// A 0-d tensor holding value.
Tensor scalar_tensor(double value, TensorOptions options = {});
// [start, end) in steps of step, like torch.arange: int64 when all three are whole
// numbers, f32 otherwise, unless options say.
Tensor arange(double start, double end, double step = 1, TensorOptions options = {});
Tensor arange(int64_t end, TensorOptions options = {});
// n × m with ones on the diagonal (m = n by default).
Tensor eye(int64_t n, int64_t m = -1, TensorOptions options = {});

// Uniform [0, 1), standard normal, and integers in [low, high).
Tensor rand(const Shape& shape, TensorOptions options = {}, Generator& gen = default_generator());
Tensor randn(const Shape& shape, TensorOptions options = {}, Generator& gen = default_generator());
Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions options = {},
               Generator& gen = default_generator());

Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor rand_like(const Tensor& t, Generator& gen = default_generator());
Tensor randn_like(const Tensor& t, Generator& gen = default_generator());

// Copies host data (n = shape's element count) into a new tensor, of T's dtype
// unless options say otherwise.
template <class T>
Tensor from_data(const T* data, const Shape& shape, TensorOptions options = {});
template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions options = {});
// 1-D.
template <class T>
Tensor from_vector(const std::vector<T>& values) {
  return from_vector(values, {static_cast<int64_t>(values.size())});
}

}  // namespace minidl
