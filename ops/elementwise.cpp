// ops/elementwise.cpp — pointwise ops: checks, forward, and backward side by side.
#include "ops/elementwise.h"

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "cuda/kernels.h"
#include "ops/cpu/kernels.h"
#include "ops/dispatch.h"
#include "ops/factory.h"
#include "ops/reduce.h"

namespace minidl {

// ---------------------------------------------------------------- plumbing

Tensor scalar_like(double v, const Tensor& like) {
  DType t = like.dtype();
  if (!is_floating(t) && v != std::floor(v)) t = DType::f32;
  if (t == DType::boolean && v != 0 && v != 1) t = DType::int64;
  return scalar_tensor(v, {.dtype = t, .device = like.device()});
}

namespace {

// Floating inputs pass through; integer and bool ones become f32 (as torch.exp does).
Tensor floating(const Tensor& x) { return is_floating(x.dtype()) ? x : x.to(DType::f32); }

// Kernel call only, no autograd: out = op(x; a, b).
Tensor unary_kernel(UnaryOp op, const char* name, const Tensor& x, double a = 0, double b = 0) {
  MINIDL_CHECK(op == UnaryOp::logical_not || x.dtype() != DType::boolean, "{}: not defined for bool tensors", name);
  Tensor out = empty(x.shape(), {.dtype = op == UnaryOp::logical_not ? DType::boolean : x.dtype(),
                                 .device = x.device()});
  if (x.device().is_cuda()) cuda::unary(op, out.arg(), x.arg(), a, b);
  else cpu::unary(op, out.arg(), x.arg(), a, b);
  return out;
}

// Kernel call only: broadcast, then out = op(x, y). x and y share a dtype.
Tensor binary_kernel(BinaryOp op, const char* name, const Tensor& x, const Tensor& y) {
  Device device = common_device(name, {x, y});
  Shape shape = broadcast_shapes(name, x.shape(), y.shape());
  Tensor out = empty(shape, {.dtype = writes_bool(op) ? DType::boolean : x.dtype(), .device = device});
  const TensorArg xa = broadcast_arg(x, shape), ya = broadcast_arg(y, shape);
  if (device.is_cuda()) cuda::binary(op, out.arg(), xa, ya);
  else cpu::binary(op, out.arg(), xa, ya);
  return out;
}

// Both operands converted (differentiably) to their common dtype.
std::pair<Tensor, Tensor> promoted(const Tensor& a, const Tensor& b, bool need_floating = false) {
  DType t = promote_types(a.dtype(), b.dtype());
  if (need_floating && !is_floating(t)) t = DType::f32;
  return {a.to(t), b.to(t)};
}

Tensor compare(BinaryOp op, const char* name, const Tensor& a, const Tensor& b) {
  NoGradGuard no_grad;
  auto [x, y] = promoted(a, b);
  return binary_kernel(op, name, x, y);
}

}  // namespace

// ---------------------------------------------------------------- binary arithmetic

Tensor add(const Tensor& a, const Tensor& b) {
  auto [x, y] = promoted(a, b);
  Tensor out = binary_kernel(BinaryOp::add, "add", x, y);
  record(out, "AddBackward", {x, y}, [xs = x.shape(), ys = y.shape()](const Tensor& g, const NeedsGrad& needs) {
    return grads{needs[0] ? sum_to(g, xs) : Tensor(), needs[1] ? sum_to(g, ys) : Tensor()};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  auto [x, y] = promoted(a, b);
  Tensor out = binary_kernel(BinaryOp::sub, "sub", x, y);
  record(out, "SubBackward", {x, y}, [xs = x.shape(), ys = y.shape()](const Tensor& g, const NeedsGrad& needs) {
    return grads{needs[0] ? sum_to(g, xs) : Tensor(), needs[1] ? sum_to(neg(g), ys) : Tensor()};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  auto [x, y] = promoted(a, b);
  Tensor out = binary_kernel(BinaryOp::mul, "mul", x, y);
  record(out, "MulBackward", {x, y}, [x = saved(x), y = saved(y)](const Tensor& g, const NeedsGrad& needs) {
    return grads{needs[0] ? sum_to(mul(g, y), x.shape()) : Tensor(),
                 needs[1] ? sum_to(mul(g, x), y.shape()) : Tensor()};
  });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  auto [x, y] = promoted(a, b, /*need_floating=*/true);
  Tensor out = binary_kernel(BinaryOp::div, "div", x, y);
  // d(x/y)/dx = 1/y,  d(x/y)/dy = -x/y² = -out/y
  record(out, "DivBackward", {x, y},
         [xs = x.shape(), y = saved(y), out = saved(out)](const Tensor& g, const NeedsGrad& needs) {
           return grads{needs[0] ? sum_to(div(g, y), xs) : Tensor(),
                        needs[1] ? sum_to(neg(div(mul(g, out), y)), y.shape()) : Tensor()};
         });
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  auto [x, y] = promoted(a, b, /*need_floating=*/true);
  Tensor out = binary_kernel(BinaryOp::pow, "pow", x, y);
  // d(x^y)/dx = y x^(y-1),  d(x^y)/dy = x^y log x
  record(out, "PowBackward", {x, y},
         [x = saved(x), y = saved(y), out = saved(out)](const Tensor& g, const NeedsGrad& needs) {
           return grads{needs[0] ? sum_to(mul(g, mul(y, pow(x, sub(y, scalar_like(1, y))))), x.shape()) : Tensor(),
                        needs[1] ? sum_to(mul(g, mul(out, log(x))), y.shape()) : Tensor()};
         });
  return out;
}

Tensor pow(const Tensor& a, double exponent) {
  Tensor x = floating(a);
  Tensor out = unary_kernel(UnaryOp::pow_scalar, "pow", x, exponent);
  record(out, "PowScalarBackward", {x}, [x = saved(x), exponent](const Tensor& g, const NeedsGrad&) {
    return grads{mul(g, mul(scalar_like(exponent, x), pow(x, exponent - 1)))};
  });
  return out;
}

// max/min: the gradient goes to the larger (smaller) operand; ties split it evenly.
static Tensor extremum(BinaryOp op, const char* name, const char* node, const Tensor& a, const Tensor& b) {
  auto [x, y] = promoted(a, b);
  Tensor out = binary_kernel(op, name, x, y);
  record(out, node, {x, y}, [x = saved(x), y = saved(y), op](const Tensor& g, const NeedsGrad& needs) {
    Tensor x_wins = op == BinaryOp::maximum ? gt(x, y) : lt(x, y);
    Tensor tie = eq(x, y);
    Tensor half_g = mul(g, scalar_like(0.5, g));
    Tensor gx = where(x_wins, g, where(tie, half_g, 0.0));
    Tensor gy = sub(g, gx);  // the two shares always add up to g
    return grads{needs[0] ? sum_to(gx, x.shape()) : Tensor(), needs[1] ? sum_to(gy, y.shape()) : Tensor()};
  });
  return out;
}
Tensor maximum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::maximum, "maximum", "MaximumBackward", a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return extremum(BinaryOp::minimum, "minimum", "MinimumBackward", a, b); }

Tensor xlogy(const Tensor& a, const Tensor& b) {
  auto [x, y] = promoted(a, b, /*need_floating=*/true);
  Tensor out = binary_kernel(BinaryOp::xlogy, "xlogy", x, y);
  // d/dx = log y (0 where x == 0, as PyTorch), d/dy = x / y
  record(out, "XlogyBackward", {x, y}, [x = saved(x), y = saved(y)](const Tensor& g, const NeedsGrad& needs) {
    return grads{needs[0] ? sum_to(mul(g, where(ne(x, 0.0), log(y), 0.0)), x.shape()) : Tensor(),
                 needs[1] ? sum_to(mul(g, div(x, y)), y.shape()) : Tensor()};
  });
  return out;
}

// ---------------------------------------------------------------- unary

Tensor neg(const Tensor& x) {
  Tensor out = unary_kernel(UnaryOp::neg, "neg", x);
  record(out, "NegBackward", {x}, [](const Tensor& g, const NeedsGrad&) { return grads{neg(g)}; });
  return out;
}

Tensor exp(const Tensor& a) {
  Tensor x = floating(a);
  Tensor y = unary_kernel(UnaryOp::exp, "exp", x);
  record(y, "ExpBackward", {x}, [y = saved(y)](const Tensor& g, const NeedsGrad&) { return grads{mul(g, y)}; });
  return y;
}

Tensor log(const Tensor& a) {
  Tensor x = floating(a);
  Tensor y = unary_kernel(UnaryOp::log, "log", x);
  record(y, "LogBackward", {x}, [x = saved(x)](const Tensor& g, const NeedsGrad&) { return grads{div(g, x)}; });
  return y;
}

Tensor sqrt(const Tensor& a) {
  Tensor x = floating(a);
  Tensor y = unary_kernel(UnaryOp::sqrt, "sqrt", x);
  record(y, "SqrtBackward", {x}, [y = saved(y)](const Tensor& g, const NeedsGrad&) {
    return grads{div(g, mul(y, scalar_like(2, y)))};  // 1 / (2 sqrt x)
  });
  return y;
}

Tensor abs(const Tensor& x) {
  Tensor y = unary_kernel(UnaryOp::abs, "abs", x);
  record(y, "AbsBackward", {x}, [x = saved(x)](const Tensor& g, const NeedsGrad&) { return grads{mul(g, sign(x))}; });
  return y;
}

Tensor sign(const Tensor& x) {
  Tensor y = unary_kernel(UnaryOp::sign, "sign", x);
  record(y, "SignBackward", {x}, [](const Tensor& g, const NeedsGrad&) { return grads{zeros_like(g)}; });
  return y;
}

Tensor clamp(const Tensor& x, double min, double max) {
  MINIDL_CHECK(min <= max, "clamp: min {} is greater than max {}", min, max);
  Tensor y = unary_kernel(UnaryOp::clamp, "clamp", x, min, max);
  record(y, "ClampBackward", {x}, [x = saved(x), min, max](const Tensor& g, const NeedsGrad&) {
    return grads{where(logical_and(ge(x, min), le(x, max)), g, 0.0)};
  });
  return y;
}

Tensor relu(const Tensor& x) {
  Tensor y = unary_kernel(UnaryOp::relu, "relu", x);
  // One fused pass: y > 0 ? g : 0.
  record(y, "ReluBackward", {x}, [y = saved(y)](const Tensor& g, const NeedsGrad&) {
    return grads{binary_kernel(BinaryOp::relu_backward, "relu_backward", g.to(y.dtype()), y)};
  });
  return y;
}

Tensor relu_backward(const Tensor& grad, const Tensor& output) {
  return binary_kernel(BinaryOp::relu_backward, "relu_backward", grad.to(output.dtype()), output);
}

Tensor leaky_relu(const Tensor& a, double slope) {
  Tensor x = floating(a);
  Tensor y = unary_kernel(UnaryOp::leaky_relu, "leaky_relu", x, slope);
  record(y, "LeakyReluBackward", {x}, [x = saved(x), slope](const Tensor& g, const NeedsGrad&) {
    return grads{where(gt(x, 0.0), g, mul(g, scalar_like(slope, g)))};
  });
  return y;
}

Tensor sigmoid(const Tensor& a) {
  Tensor x = floating(a);
  Tensor y = unary_kernel(UnaryOp::sigmoid, "sigmoid", x);
  record(y, "SigmoidBackward", {x}, [y = saved(y)](const Tensor& g, const NeedsGrad&) {
    return grads{mul(g, mul(y, sub(scalar_like(1, y), y)))};  // y (1 - y)
  });
  return y;
}

Tensor tanh(const Tensor& a) {
  Tensor x = floating(a);
  Tensor y = unary_kernel(UnaryOp::tanh, "tanh", x);
  record(y, "TanhBackward", {x}, [y = saved(y)](const Tensor& g, const NeedsGrad&) {
    return grads{mul(g, sub(scalar_like(1, y), mul(y, y)))};  // 1 - y²
  });
  return y;
}

Tensor gelu(const Tensor& a) {
  Tensor x = floating(a);
  Tensor y = unary_kernel(UnaryOp::gelu, "gelu", x);
  record(y, "GeluBackward", {x}, [x = saved(x)](const Tensor& g, const NeedsGrad&) {
    return grads{gelu_backward(g, x)};
  });
  return y;
}

Tensor gelu_backward(const Tensor& grad, const Tensor& x) {
  return binary_kernel(BinaryOp::gelu_backward, "gelu_backward", grad.to(x.dtype()), x);
}

// ---------------------------------------------------------------- comparisons, logic, where

Tensor eq(const Tensor& a, const Tensor& b) { return compare(BinaryOp::eq, "eq", a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare(BinaryOp::ne, "ne", a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare(BinaryOp::lt, "lt", a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return compare(BinaryOp::le, "le", a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare(BinaryOp::gt, "gt", a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare(BinaryOp::ge, "ge", a, b); }
Tensor eq(const Tensor& a, double b) { return eq(a, scalar_like(b, a)); }
Tensor ne(const Tensor& a, double b) { return ne(a, scalar_like(b, a)); }
Tensor lt(const Tensor& a, double b) { return lt(a, scalar_like(b, a)); }
Tensor le(const Tensor& a, double b) { return le(a, scalar_like(b, a)); }
Tensor gt(const Tensor& a, double b) { return gt(a, scalar_like(b, a)); }
Tensor ge(const Tensor& a, double b) { return ge(a, scalar_like(b, a)); }
Tensor logical_and(const Tensor& a, const Tensor& b) { return compare(BinaryOp::logical_and, "logical_and", a, b); }
Tensor logical_or(const Tensor& a, const Tensor& b) { return compare(BinaryOp::logical_or, "logical_or", a, b); }
Tensor logical_not(const Tensor& a) {
  NoGradGuard no_grad;
  return unary_kernel(UnaryOp::logical_not, "logical_not", a);
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  MINIDL_CHECK(cond.dtype() == DType::boolean, "where: condition must be bool, got {}", cond.dtype());
  auto [x, y] = promoted(a, b);
  Device device = common_device("where", {cond, x, y});
  Shape shape = broadcast_shapes("where", broadcast_shapes("where", cond.shape(), x.shape()), y.shape());
  Tensor out = empty(shape, {.dtype = x.dtype(), .device = device});
  const TensorArg ca = broadcast_arg(cond, shape), xa = broadcast_arg(x, shape), ya = broadcast_arg(y, shape);
  if (device.is_cuda()) cuda::where(out.arg(), ca, xa, ya);
  else cpu::where(out.arg(), ca, xa, ya);
  record(out, "WhereBackward", {x, y},
         [cond = saved(cond), xs = x.shape(), ys = y.shape()](const Tensor& g, const NeedsGrad& needs) {
           return grads{needs[0] ? sum_to(where(cond, g, 0.0), xs) : Tensor(),
                        needs[1] ? sum_to(where(logical_not(cond), g, 0.0), ys) : Tensor()};
         });
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, double b) { return where(cond, a, scalar_like(b, a)); }

}  // namespace minidl
