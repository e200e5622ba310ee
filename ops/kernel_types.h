// ops/kernel_types.h — the op codes shared by the CPU and CUDA kernels.
//
// The elementwise families are one kernel each, switching on these codes, so a
// new pointwise op is one enum value plus one line in each backend's functor.
#pragma once

#include <cstdint>

namespace minidl {

// y = f(x; a, b). a and b are the op's scalar parameters where it has any.
enum class UnaryOp : uint8_t {
  neg, exp, log, sqrt, abs, sign,
  relu, leaky_relu,   // a = negative slope
  sigmoid, tanh,
  gelu,               // exact: x * Phi(x)
  pow_scalar,         // x ^ a
  clamp,              // min(max(x, a), b)
  logical_not,
};

// An activation fused into the op before it (linear, conv2d): applied to the
// output while it is still in cache, instead of a separate pass over memory.
enum class Activation : uint8_t { none, relu };

// z = f(x, y). Comparisons and logical ops write bool.
enum class BinaryOp : uint8_t {
  add, sub, mul, div, pow, maximum, minimum,
  xlogy,              // x * log(y), 0 where x == 0
  gelu_backward,      // x = grad, y = input: grad * d gelu(y) / dy
  relu_backward,      // x = grad, y = output: y > 0 ? grad : 0
  eq, ne, lt, le, gt, ge, logical_and, logical_or,
};

constexpr bool writes_bool(BinaryOp op) { return op >= BinaryOp::eq; }

// Row reductions over the last axis of a (rows, cols) view.
enum class ReduceOp : uint8_t { sum, max, min, logsumexp, var };

}  // namespace minidl
