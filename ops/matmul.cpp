#include "ops/matmul.h"

#include "core/autograd.h"
#include "core/check.h"
#include "cuda/kernels.h"
#include "ops/cpu/kernels.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/factory.h"
#include "ops/reduce.h"

namespace minidl {

namespace {

// One 2-D slice of a (possibly broadcast) batched operand, as the GEMM sees it.
TensorArg matrix_at(const TensorArg& batched, int64_t offset_elems) {
  TensorArg m;
  m.dtype = batched.dtype;
  m.ndim = 2;
  m.data = static_cast<char*>(batched.data) + offset_elems * static_cast<int64_t>(element_size(batched.dtype));
  m.shape[0] = batched.shape[batched.ndim - 2], m.shape[1] = batched.shape[batched.ndim - 1];
  m.strides[0] = batched.strides[batched.ndim - 2], m.strides[1] = batched.strides[batched.ndim - 1];
  return m;
}

// a (..., M, K) · b (..., K, N), both at least 2-D: the kernel loop over the batch.
Tensor batched_matmul(const Tensor& a, const Tensor& b) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  Shape batch = broadcast_shapes("matmul", Shape(a.shape().begin(), a.shape().end() - 2),
                                 Shape(b.shape().begin(), b.shape().end() - 2));
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = empty(out_shape, {.dtype = a.dtype(), .device = a.device()});

  Shape a_shape = batch, b_shape = batch;
  a_shape.insert(a_shape.end(), {M, K});
  b_shape.insert(b_shape.end(), {K, N});
  TensorArg A = broadcast_arg(a, a_shape), B = broadcast_arg(b, b_shape), C = out.arg();
  const int nb = static_cast<int>(batch.size());
  const int64_t batches = shape_numel(batch);
  const bool on_cuda = a.device().is_cuda();
  for (int64_t i = 0; i < batches; ++i) {
    int64_t rest = i, a_off = 0, b_off = 0;
    for (int d = nb - 1; d >= 0; --d) {
      int64_t coord = rest % batch[d];
      rest /= batch[d];
      a_off += coord * A.strides[d];
      b_off += coord * B.strides[d];
    }
    const TensorArg Ai = matrix_at(A, a_off), Bi = matrix_at(B, b_off), Ci = matrix_at(C, i * M * N);
    if (on_cuda) cuda::gemm(M, N, K, 1.0, Ai, Bi, 0.0, Ci);
    else cpu::gemm(M, N, K, 1.0, Ai, Bi, 0.0, Ci);
  }
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  MINIDL_CHECK(a_in.dim() >= 1 && b_in.dim() >= 1, "matmul: both arguments need at least 1 dim, got shapes {} and {}",
               a_in.shape(), b_in.shape());
  common_device("matmul", {a_in, b_in});
  MINIDL_CHECK(a_in.dtype() == b_in.dtype(), "matmul: dtypes differ: {} and {}", a_in.dtype(), b_in.dtype());
  MINIDL_CHECK(a_in.dtype() == DType::f32 || a_in.dtype() == DType::f64,
               "matmul: expected f32 or f64 tensors, got {}", a_in.dtype());
  // 1-D operands: a row vector on the left, a column on the right (removed again below).
  Tensor a = a_in.dim() == 1 ? a_in.unsqueeze(0) : a_in;
  Tensor b = b_in.dim() == 1 ? b_in.unsqueeze(-1) : b_in;
  MINIDL_CHECK(a.size(-1) == b.size(-2), "matmul: cannot multiply {} by {}: inner dimensions {} and {} differ",
               a_in.shape(), b_in.shape(), a.size(-1), b.size(-2));

  Tensor out = batched_matmul(a, b);
  // dA = dC · Bᵀ,  dB = Aᵀ · dC, summed over broadcast batch dims.
  record(out, "MatmulBackward", {a, b}, [a = saved(a), b = saved(b)](const Tensor& g, const NeedsGrad& needs) {
    return grads{needs[0] ? sum_to(matmul(g, b.transpose(-1, -2)), a.shape()) : Tensor(),
                 needs[1] ? sum_to(matmul(a.transpose(-1, -2), g), b.shape()) : Tensor()};
  });
  if (a_in.dim() == 1) out = out.squeeze(-2);
  if (b_in.dim() == 1) out = out.squeeze(-1);
  return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias_in, Activation act) {
  MINIDL_CHECK(weight.dim() == 2, "linear: weight must be 2-D (out_features, in_features), got {}", weight.shape());
  MINIDL_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1),
               "linear: input {} has {} features but weight {} expects {}", x.shape(),
               x.dim() >= 1 ? x.size(-1) : 0, weight.shape(), weight.size(1));
  const int64_t in = weight.size(1), out = weight.size(0);
  if (bias_in.defined())
    MINIDL_CHECK(bias_in.dim() == 1 && bias_in.size(0) == out,
                 "linear: bias {} does not match weight {} (expected [{}])", bias_in.shape(), weight.shape(), out);
  Device device = common_device("linear", {x, weight, bias_in});
  MINIDL_CHECK(x.dtype() == weight.dtype() && (!bias_in.defined() || bias_in.dtype() == x.dtype()),
               "linear: dtypes differ: input {}, weight {}{}", x.dtype(), weight.dtype(),
               bias_in.defined() ? fmt::format(", bias {}", bias_in.dtype()) : "");
  MINIDL_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64, "linear: expected f32 or f64 tensors, got {}",
               x.dtype());

  // Rows of x as a matrix (N, in); the weight is read transposed through its strides.
  Tensor x2 = x.reshape({-1, in});
  Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  const int64_t N = x2.size(0);
  Tensor y2 = empty({N, out}, {.dtype = x.dtype(), .device = device});
  const GemmEpilogue epilogue{.bias = bias.defined() ? bias.raw_data() : nullptr, .relu = act == Activation::relu};
  const TensorArg xa = x2.arg(), wa = weight.t().arg(), ya = y2.arg();
  if (device.is_cuda()) cuda::gemm(N, out, in, 1.0, xa, wa, 0.0, ya, cuda::GemmKernel::best, epilogue);
  else cpu::gemm(N, out, in, 1.0, xa, wa, 0.0, ya, cpu::GemmKernel::best, epilogue);

  Shape out_shape = x.shape();
  out_shape.back() = out;
  Tensor y = y2.reshape(out_shape);
  // g is the gradient at the output; through the ReLU it is kept where the output
  // is positive. Then dx = g · W, dW = gᵀ · x, db = Σ_rows g.
  record(y, "LinearBackward", {x, weight, bias},
         [x2 = saved(x2), w = saved(weight), y2 = saved(y2), act, x_shape = x.shape()](const Tensor& g_in,
                                                                                              const NeedsGrad& needs) {
           Tensor g = g_in.reshape(y2.shape());
           if (act == Activation::relu) g = relu_backward(g, y2);
           return grads{needs[0] ? matmul(g, w).reshape(x_shape) : Tensor(),
                        needs[1] ? matmul(g.t(), x2) : Tensor(),
                        needs[2] ? sum(g, {0}) : Tensor()};
         });
  return y;
}

}  // namespace minidl
