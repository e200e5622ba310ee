#include "ops/factory.h"

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "ops/cpu/kernels.h"

namespace minidl {

Generator& default_generator() {
  static Generator gen(0);
  return gen;
}

Tensor empty(const Shape& shape, TensorOptions options) {
  Tensor t(shape, {.dtype = options.dtype_or(DType::f32), .device = options.device});
  if (options.requires_grad) t.requires_grad_(true);
  return t;
}

Tensor full(const Shape& shape, double value, TensorOptions options) {
  Tensor t = empty(shape, {.dtype = options.dtype, .device = options.device});
  {
    NoGradGuard no_grad;
    t.fill_(value);
  }
  if (options.requires_grad) t.requires_grad_(true);
  return t;
}
Tensor zeros(const Shape& shape, TensorOptions options) { return full(shape, 0.0, options); }
Tensor ones(const Shape& shape, TensorOptions options) { return full(shape, 1.0, options); }
Tensor scalar_tensor(double value, TensorOptions options) { return full({}, value, options); }

Tensor arange(double start, double end, double step, TensorOptions options) {
  MINIDL_CHECK(step != 0, "arange: step must be nonzero");
  const bool whole = start == std::floor(start) && end == std::floor(end) && step == std::floor(step);
  options.dtype = options.dtype_or(whole ? DType::int64 : DType::f32);
  MINIDL_CHECK(std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
               "arange: start {}, end {} and step {} must be finite", start, end, step);
  double count = std::ceil((end - start) / step);
  MINIDL_CHECK(count < 1e12, "arange: [{}, {}) in steps of {} would have {} elements", start, end, step, count);
  int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
  std::vector<double> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[i] = start + static_cast<double>(i) * step;
  return from_vector(values, {n}, options);
}
Tensor arange(int64_t end, TensorOptions options) { return arange(0, static_cast<double>(end), 1, options); }

Tensor eye(int64_t n, int64_t m, TensorOptions options) {
  if (m < 0) m = n;
  MINIDL_CHECK(n >= 0, "eye: n must be non-negative, got {}", n);
  std::vector<double> values(static_cast<size_t>(n * m), 0.0);
  for (int64_t i = 0; i < std::min(n, m); ++i) values[i * m + i] = 1.0;
  return from_vector(values, {n, m}, options);
}

namespace {
// Random tensors are drawn on the CPU (one reproducible stream) and then moved.
template <class Fill>
Tensor random_tensor(const Shape& shape, TensorOptions options, Fill&& fill) {
  Tensor t = empty(shape, {.dtype = options.dtype});
  fill(t.arg());  // t is fresh and contiguous, as the fill kernels expect
  if (!options.device.is_cpu()) t = t.to(options.device);
  if (options.requires_grad) t.requires_grad_(true);
  return t;
}
}  // namespace

Tensor rand(const Shape& shape, TensorOptions options, Generator& gen) {
  options.dtype = options.dtype_or(DType::f32);
  MINIDL_CHECK(is_floating(*options.dtype), "rand: expected a floating dtype, got {}", *options.dtype);
  return random_tensor(shape, options, [&](const TensorArg& a) { cpu::fill_uniform(a, 0.0, 1.0, gen); });
}
Tensor randn(const Shape& shape, TensorOptions options, Generator& gen) {
  options.dtype = options.dtype_or(DType::f32);
  MINIDL_CHECK(is_floating(*options.dtype), "randn: expected a floating dtype, got {}", *options.dtype);
  return random_tensor(shape, options, [&](const TensorArg& a) { cpu::fill_normal(a, 0.0, 1.0, gen); });
}
Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions options, Generator& gen) {
  MINIDL_CHECK(low < high, "randint: low {} must be below high {}", low, high);
  options.dtype = options.dtype_or(DType::int64);
  return random_tensor(shape, options, [&](const TensorArg& a) { cpu::fill_randint(a, low, high, gen); });
  // (fill_randint works in unsigned arithmetic: any low < high is fine, even the full int64 range)
}

Tensor empty_like(const Tensor& t) { return empty(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor full_like(const Tensor& t, double v) { return full(t.shape(), v, {.dtype = t.dtype(), .device = t.device()}); }
Tensor rand_like(const Tensor& t, Generator& gen) {
  return rand(t.shape(), {.dtype = t.dtype(), .device = t.device()}, gen);
}
Tensor randn_like(const Tensor& t, Generator& gen) {
  return randn(t.shape(), {.dtype = t.dtype(), .device = t.device()}, gen);
}

template <class T>
Tensor from_data(const T* data, const Shape& shape, TensorOptions options) {
  Tensor host = empty(shape, {.dtype = dtype_v<T>});
  if (host.numel() > 0) std::copy_n(data, host.numel(), host.data_ptr<T>());
  Tensor t = host;
  if (options.dtype_or(dtype_v<T>) != dtype_v<T>) t = t.to(*options.dtype);
  if (!options.device.is_cpu()) t = t.to(options.device);
  if (options.requires_grad) t.requires_grad_(true);
  return t;
}

template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions options) {
  MINIDL_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape),
               "from_vector: {} values do not fill shape {} ({} elements)", values.size(), shape, shape_numel(shape));
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<uint8_t> bytes(values.begin(), values.end());
    Tensor host = empty(shape, {.dtype = DType::boolean});
    std::copy(bytes.begin(), bytes.end(), reinterpret_cast<uint8_t*>(host.raw_data()));
    return host.to(options.dtype_or(DType::boolean)).to(options.device);
  } else {
    return from_data(values.data(), shape, options);
  }
}

#define MINIDL_INSTANTIATE_FROM(T)                                                     \
  template Tensor from_data<T>(const T*, const Shape&, TensorOptions);                 \
  template Tensor from_vector<T>(const std::vector<T>&, const Shape&, TensorOptions);
MINIDL_INSTANTIATE_FROM(float)
MINIDL_INSTANTIATE_FROM(double)
MINIDL_INSTANTIATE_FROM(int8_t)
MINIDL_INSTANTIATE_FROM(int32_t)
MINIDL_INSTANTIATE_FROM(int64_t)
MINIDL_INSTANTIATE_FROM(bf16)
template Tensor from_vector<bool>(const std::vector<bool>&, const Shape&, TensorOptions);
#undef MINIDL_INSTANTIATE_FROM

}  // namespace minidl
