// ops/elementwise.h — pointwise math with NumPy broadcasting, all differentiable.
//
// Binary ops broadcast their operands (shapes [4, 1, 3] and [2, 1] give [4, 2, 3])
// and promote dtypes (int64 + f32 -> f32). A double operand becomes a 0-d tensor
// of the other operand's dtype (or f32 when that is an integer type and the
// value is not a whole number).
#pragma once

#include "core/tensor.h"

namespace minidl {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);       // true division: ints give f32
Tensor pow(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, double exponent);
Tensor maximum(const Tensor& a, const Tensor& b);   // elementwise; for reductions see max()
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor xlogy(const Tensor& x, const Tensor& y);     // x * log(y), 0 where x == 0 (as in KL)

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sign(const Tensor& x);
Tensor clamp(const Tensor& x, double min, double max);
Tensor relu(const Tensor& x);
// output > 0 ? grad : 0 — relu's backward from its output, for fused ops' backward
// functions. Not itself recorded for autograd.
Tensor relu_backward(const Tensor& grad, const Tensor& output);
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor gelu(const Tensor& x);  // exact (erf) form, PyTorch's default

// Comparisons and logic give bool tensors; not differentiable.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double b);
Tensor ne(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor le(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);
Tensor ge(const Tensor& a, double b);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
Tensor logical_not(const Tensor& a);

// cond ? a : b, broadcasting all three; cond is bool. Differentiable in a and b.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, double b);

// A 0-d tensor holding v, typed to combine with `like` (see the header comment).
Tensor scalar_like(double v, const Tensor& like);

// Internal backward helper: grad * gelu'(x).
Tensor gelu_backward(const Tensor& grad, const Tensor& x);

inline Tensor add(const Tensor& a, double b) { return add(a, scalar_like(b, a)); }
inline Tensor sub(const Tensor& a, double b) { return sub(a, scalar_like(b, a)); }
inline Tensor mul(const Tensor& a, double b) { return mul(a, scalar_like(b, a)); }
inline Tensor div(const Tensor& a, double b) { return div(a, scalar_like(b, a)); }

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, scalar_like(b, a)); }
inline Tensor operator-(const Tensor& a, double b) { return sub(a, scalar_like(b, a)); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, scalar_like(b, a)); }
inline Tensor operator/(const Tensor& a, double b) { return div(a, scalar_like(b, a)); }
inline Tensor operator+(double a, const Tensor& b) { return add(scalar_like(a, b), b); }
inline Tensor operator-(double a, const Tensor& b) { return sub(scalar_like(a, b), b); }
inline Tensor operator*(double a, const Tensor& b) { return mul(scalar_like(a, b), b); }
inline Tensor operator/(double a, const Tensor& b) { return div(scalar_like(a, b), b); }

}  // namespace minidl
