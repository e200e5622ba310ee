// ops/cpu/elementwise.cpp — unary, binary and where kernels.
//
// Bandwidth-bound: each op reads its inputs once and writes once. Values are
// computed in compute_t<T> (f32 for bf16). The op switch sits outside the loop
// so each loop body is one straight-line expression the compiler can vectorise.
#include <cmath>

#include "core/dtype_dispatch.h"
#include "ops/cpu/exp.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"

namespace minidl::cpu {

namespace {

template <class C>
C gelu(C x) {
  return C(0.5) * x * (C(1) + std::erf(x * C(M_SQRT1_2)));
}
// d/dx [x * Phi(x)] = Phi(x) + x * phi(x)
template <class C>
C gelu_grad(C x) {
  C cdf = C(0.5) * (C(1) + std::erf(x * C(M_SQRT1_2)));
  C pdf = std::exp(C(-0.5) * x * x) * C(0.5 * M_2_SQRTPI * M_SQRT1_2);
  return cdf + x * pdf;
}

template <class T, class F>
void map(const TensorArg& out, const TensorArg& x, F f) {
  T* o = out.ptr<T>();
  const T* in = x.ptr<T>();
  for_each_offset<2>(out, {&out, &x}, [&](const auto& off) {
    o[off[0]] = T(f(static_cast<compute_t<T>>(in[off[1]])));
  });
}

template <class T>
void unary_typed(UnaryOp op, const TensorArg& out, const TensorArg& x, double a, double b) {
  using C = compute_t<T>;
  const C ca = static_cast<C>(a), cb = static_cast<C>(b);
  switch (op) {
    case UnaryOp::neg: return map<T>(out, x, [](C v) { return -v; });
    case UnaryOp::abs: return map<T>(out, x, [](C v) { return v < C(0) ? C(-v) : v; });
    case UnaryOp::sign: return map<T>(out, x, [](C v) { return C((C(0) < v) - (v < C(0))); });
    case UnaryOp::relu: return map<T>(out, x, [](C v) { return v > C(0) ? v : C(0); });
    case UnaryOp::clamp:
      return map<T>(out, x, [=](C v) { return v < ca ? ca : (v > cb ? cb : v); });
    default: break;
  }
  if constexpr (std::is_floating_point_v<C>) {
    switch (op) {
      case UnaryOp::exp: return map<T>(out, x, [](C v) { return exp_of(v); });  // vectorised for f32 and bf16
      case UnaryOp::log: return map<T>(out, x, [](C v) { return std::log(v); });
      case UnaryOp::sqrt: return map<T>(out, x, [](C v) { return std::sqrt(v); });
      case UnaryOp::leaky_relu: return map<T>(out, x, [=](C v) { return v > C(0) ? v : v * ca; });
      // 1/(1+e^-x) for x >= 0 and e^x/(1+e^x) below: neither overflows.
      case UnaryOp::sigmoid:
        return map<T>(out, x, [](C v) {
          if (v >= C(0)) return C(1) / (C(1) + std::exp(-v));
          C e = std::exp(v);
          return e / (C(1) + e);
        });
      case UnaryOp::tanh: return map<T>(out, x, [](C v) { return std::tanh(v); });
      case UnaryOp::gelu: return map<T>(out, x, [](C v) { return gelu(v); });
      case UnaryOp::pow_scalar: return map<T>(out, x, [=](C v) { return std::pow(v, ca); });
      default: break;
    }
  }
  unsupported_dtype("unary op", dtype_v<T>);
}

template <class T, class R, class F>
void zip(const TensorArg& out, const TensorArg& x, const TensorArg& y, F f) {
  R* o = out.ptr<R>();
  const T* px = x.ptr<T>();
  const T* py = y.ptr<T>();
  for_each_offset<3>(out, {&out, &x, &y}, [&](const auto& off) {
    o[off[0]] = R(f(static_cast<compute_t<T>>(px[off[1]]), static_cast<compute_t<T>>(py[off[2]])));
  });
}

template <class T>
void binary_typed(BinaryOp op, const TensorArg& out, const TensorArg& x, const TensorArg& y) {
  using C = compute_t<T>;
  switch (op) {
    case BinaryOp::add: return zip<T, T>(out, x, y, [](C a, C b) { return a + b; });
    case BinaryOp::sub: return zip<T, T>(out, x, y, [](C a, C b) { return a - b; });
    case BinaryOp::mul: return zip<T, T>(out, x, y, [](C a, C b) { return a * b; });
    case BinaryOp::maximum: return zip<T, T>(out, x, y, [](C a, C b) { return a < b ? b : a; });
    case BinaryOp::minimum: return zip<T, T>(out, x, y, [](C a, C b) { return b < a ? b : a; });
    case BinaryOp::relu_backward: return zip<T, T>(out, x, y, [](C g, C v) { return v > C(0) ? g : C(0); });
    case BinaryOp::eq: return zip<T, bool>(out, x, y, [](C a, C b) { return a == b; });
    case BinaryOp::ne: return zip<T, bool>(out, x, y, [](C a, C b) { return a != b; });
    case BinaryOp::lt: return zip<T, bool>(out, x, y, [](C a, C b) { return a < b; });
    case BinaryOp::le: return zip<T, bool>(out, x, y, [](C a, C b) { return a <= b; });
    case BinaryOp::gt: return zip<T, bool>(out, x, y, [](C a, C b) { return a > b; });
    case BinaryOp::ge: return zip<T, bool>(out, x, y, [](C a, C b) { return a >= b; });
    case BinaryOp::logical_and: return zip<T, bool>(out, x, y, [](C a, C b) { return a != C(0) && b != C(0); });
    case BinaryOp::logical_or: return zip<T, bool>(out, x, y, [](C a, C b) { return a != C(0) || b != C(0); });
    default: break;
  }
  if constexpr (std::is_floating_point_v<C>) {
    switch (op) {
      case BinaryOp::div: return zip<T, T>(out, x, y, [](C a, C b) { return a / b; });
      case BinaryOp::pow: return zip<T, T>(out, x, y, [](C a, C b) { return std::pow(a, b); });
      case BinaryOp::xlogy: return zip<T, T>(out, x, y, [](C a, C b) { return a == C(0) ? C(0) : a * std::log(b); });
      case BinaryOp::gelu_backward: return zip<T, T>(out, x, y, [](C g, C v) { return g * gelu_grad(v); });
      default: break;
    }
  }
  unsupported_dtype("binary op", dtype_v<T>);
}

}  // namespace

void unary(UnaryOp op, const TensorArg& out, const TensorArg& x, double a, double b) {
  if (op == UnaryOp::logical_not) {
    dispatch_all(x.dtype, "logical_not", [&](auto tag) {
      using T = decltype(tag);
      bool* o = out.ptr<bool>();
      const T* in = x.ptr<T>();
      for_each_offset<2>(out, {&out, &x}, [&](const auto& off) {
        o[off[0]] = static_cast<compute_t<T>>(in[off[1]]) == compute_t<T>(0);
      });
    });
    return;
  }
  dispatch_numeric(x.dtype, "unary op", [&](auto tag) { unary_typed<decltype(tag)>(op, out, x, a, b); });
}

void binary(BinaryOp op, const TensorArg& out, const TensorArg& x, const TensorArg& y) {
  dispatch_all(x.dtype, "binary op", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      // bool operands: only comparisons and logic make sense; done on 0/1 bytes.
      if (!writes_bool(op)) unsupported_dtype("arithmetic", DType::boolean);
      TensorArg xi = x, yi = y;
      xi.dtype = yi.dtype = DType::int8;
      binary_typed<int8_t>(op, out, xi, yi);
    } else {
      binary_typed<T>(op, out, x, y);
    }
  });
}

void where(const TensorArg& out, const TensorArg& cond, const TensorArg& x, const TensorArg& y) {
  dispatch_all(out.dtype, "where", [&](auto tag) {
    using T = decltype(tag);
    T* o = out.ptr<T>();
    const bool* c = cond.ptr<bool>();
    const T* px = x.ptr<T>();
    const T* py = y.ptr<T>();
    for_each_offset<4>(out, {&out, &cond, &x, &y},
                       [&](const auto& off) { o[off[0]] = c[off[1]] ? px[off[2]] : py[off[3]]; });
  });
}

}  // namespace minidl::cpu
