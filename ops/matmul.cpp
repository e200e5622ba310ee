#include "ops/matmul.h"

#include "core/autograd.h"
#include "core/check.h"
#include "cuda/gemm_layout.h"
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
  if (on_cuda) {
    // The batch dims of A and of B as one step each (cuda/gemm_layout.h): then
    // one strided-batched GEMM call for the whole batch.
    int64_t sa = 0, sb = 0;
    if (cuda::batch_step(batch.data(), A.strides, nb, sa) && cuda::batch_step(batch.data(), B.strides, nb, sb)) {
      cuda::gemm_batched(batches, M, N, K, matrix_at(A, 0), sa, matrix_at(B, 0), sb, matrix_at(C, 0), M * N);
      return out;
    }
  }
  for (int64_t i = 0; i < batches; ++i) {
    int64_t rest = i, a_off = 0, b_off = 0;
    for (int d = nb - 1; d >= 0; --d) {
      int64_t coord = rest % batch[d];
      rest /= batch[d];
      a_off += coord * A.strides[d];
      b_off += coord * B.strides[d];
    }
    const TensorArg Ai = matrix_at(A, a_off), Bi = matrix_at(B, b_off), Ci = matrix_at(C, i * M * N);
    if (on_cuda)
      cuda::gemm(M, N, K, 1.0, Ai, Bi, 0.0, Ci);
    else
      cpu::gemm(M, N, K, 1.0, Ai, Bi, 0.0, Ci);
  }
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  MINIDL_CHECK(a_in.dim() >= 1 && b_in.dim() >= 1, "matmul: both arguments need at least 1 dim, got shapes {} and {}",
               a_in.shape(), b_in.shape());
  common_device("matmul", {a_in, b_in});
  MINIDL_CHECK(a_in.dtype() == b_in.dtype(), "matmul: dtypes differ: {} and {}", a_in.dtype(), b_in.dtype());
  MINIDL_CHECK(a_in.dtype() == DType::f32 || a_in.dtype() == DType::f64, "matmul: expected f32 or f64 tensors, got {}",
               a_in.dtype());
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

namespace {
// A bf16 layer on the GPU (cuda/gemm.cu's linear_bf16): cuBLAS reads the weight
// as it is stored, so there is nothing to pack; the sums are f32 and the output
// is rounded to bf16 once, as on the CPU.
Tensor linear_bf16_cuda(const Tensor& x, const Tensor& weight, const Tensor& bias_in, Activation act) {
  const int64_t in = weight.size(1), out = weight.size(0);
  const Tensor x2 = x.reshape({-1, in}).contiguous(), w = weight.contiguous();
  const Tensor bias = bias_in.defined() ? bias_in.to(DType::f32).contiguous() : Tensor();
  Tensor y = empty({x2.size(0), out}, {.dtype = DType::bf16, .device = x.device()});
  cuda::Bf16LinearArgs a;
  a.x = static_cast<const uint16_t*>(x2.raw_data()), a.w = static_cast<const uint16_t*>(w.raw_data());
  a.M = x2.size(0), a.N = out, a.K = in;
  a.bias = bias.defined() ? bias.data_ptr<float>() : nullptr;
  a.relu = act == Activation::relu;
  a.y_bf16 = static_cast<uint16_t*>(y.raw_data()), a.ldy = out;
  cuda::linear_bf16(a);
  Shape out_shape = x.shape();
  out_shape.back() = out;
  return y.reshape(out_shape);
}

// y = act(x · Wᵀ + bias) on the CPU in bf16, the weight either packed (`packed`,
// any batch) or as stored (`weight`, the small-M kernel). The caller has
// checked the shapes.
Tensor linear_bf16_cpu(const Tensor& x, const Tensor& weight, const Bf16Weight* packed, const Tensor& bias_in,
                       Activation act, bool f32_out) {
  const int64_t N = packed ? packed->out_features : weight.size(0), K = packed ? packed->in_features : weight.size(1);
  const Tensor x2 = x.reshape({-1, K}).contiguous();
  const Tensor bias = bias_in.defined() ? bias_in.to(DType::f32).contiguous() : Tensor();
  const int64_t M = x2.size(0);
  Tensor y = empty({M, N}, {.dtype = f32_out ? DType::f32 : DType::bf16});
  cpu::Bf16GemmArgs a;
  a.M = M, a.N = N, a.K = K;
  a.x = static_cast<const uint16_t*>(x2.raw_data()), a.ldx = K;
  if (packed)
    a.w_packed = static_cast<const uint16_t*>(packed->packed.raw_data());
  else
    a.w = static_cast<const uint16_t*>(weight.raw_data()), a.ldw = K;
  a.bias = bias.defined() ? bias.data_ptr<float>() : nullptr;
  a.relu = act == Activation::relu;
  if (f32_out)
    a.y = y.data_ptr<float>();
  else
    a.y_bf16 = static_cast<uint16_t*>(y.raw_data());
  a.ldy = N;
  cpu::gemm_bf16(a, packed ? cpu::Bf16GemmKernel::best : cpu::Bf16GemmKernel::small_m);
  Shape out_shape = x.shape();
  out_shape.back() = N;
  return y.reshape(out_shape);
}
}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias_in, Activation act) {
  MINIDL_CHECK(weight.dim() == 2, "linear: weight must be 2-D (out_features, in_features), got {}", weight.shape());
  MINIDL_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1),
               "linear: input {} has {} features but weight {} expects {}", x.shape(), x.dim() >= 1 ? x.size(-1) : 0,
               weight.shape(), weight.size(1));
  const int64_t in = weight.size(1), out = weight.size(0);
  if (bias_in.defined())
    MINIDL_CHECK(bias_in.dim() == 1 && bias_in.size(0) == out,
                 "linear: bias {} does not match weight {} (expected [{}])", bias_in.shape(), weight.shape(), out);
  Device device = common_device("linear", {x, weight, bias_in});
  MINIDL_CHECK(x.dtype() == weight.dtype() && (!bias_in.defined() || bias_in.dtype() == x.dtype()),
               "linear: dtypes differ: input {}, weight {}{}", x.dtype(), weight.dtype(),
               bias_in.defined() ? fmt::format(", bias {}", bias_in.dtype()) : "");
  if (x.dtype() == DType::bf16) {
    MINIDL_CHECK(!((x.requires_grad() || weight.requires_grad() || (bias_in.defined() && bias_in.requires_grad())) &&
                   grad_mode_enabled()),
                 "linear: bf16 runs inference only (no gradient yet): call it under NoGradGuard, or train in f32");
    if (device.is_cuda()) return linear_bf16_cuda(x, weight, bias_in, act);
    // A few rows: the small-M kernel reads the weight as stored, where packing
    // it would copy all of it to use each element at most four times.
    if (x.numel() <= cpu::kBf16SmallM * in)
      return linear_bf16_cpu(x, weight.contiguous(), nullptr, bias_in, act, false);
    return linear_bf16(x, pack_bf16_weight(weight), bias_in, act);
  }
  MINIDL_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64, "linear: expected f32, f64 or bf16 tensors, got {}",
               x.dtype());

  // Rows of x as a matrix (N, in); the weight is read transposed through its strides.
  Tensor x2 = x.reshape({-1, in});
  Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  const int64_t N = x2.size(0);
  Tensor y2 = empty({N, out}, {.dtype = x.dtype(), .device = device});
  const GemmEpilogue epilogue{.bias = bias.defined() ? bias.raw_data() : nullptr, .relu = act == Activation::relu};
  const TensorArg xa = x2.arg(), wa = weight.t().arg(), ya = y2.arg();
  if (device.is_cuda())
    cuda::gemm(N, out, in, 1.0, xa, wa, 0.0, ya, cuda::GemmKernel::best, epilogue);
  else
    cpu::gemm(N, out, in, 1.0, xa, wa, 0.0, ya, cpu::GemmKernel::best, epilogue);

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
           return grads{needs[0] ? matmul(g, w).reshape(x_shape) : Tensor(), needs[1] ? matmul(g.t(), x2) : Tensor(),
                        needs[2] ? sum(g, {0}) : Tensor()};
         });
  return y;
}

Bf16Weight pack_bf16_weight(const Tensor& weight_in) {
  MINIDL_CHECK(weight_in.dim() == 2 && weight_in.dtype() == DType::bf16 && weight_in.device().is_cpu(),
               "pack_bf16_weight: expected a bf16 (out, in) CPU weight, got {} {} on {}", weight_in.dtype(),
               weight_in.shape(), weight_in.device());
  const Tensor w = weight_in.contiguous();
  Bf16Weight p{.packed = empty({cpu::gemm_bf16_packed_elements(w.size(0), w.size(1))}, {.dtype = DType::bf16}),
               .out_features = w.size(0),
               .in_features = w.size(1)};
  cpu::gemm_bf16_pack_weight(static_cast<const uint16_t*>(w.raw_data()), w.size(1), w.size(0), w.size(1),
                             static_cast<uint16_t*>(p.packed.raw_data()));
  return p;
}

Tensor linear_bf16(const Tensor& x, const Bf16Weight& w, const Tensor& bias_in, Activation act, bool f32_out) {
  MINIDL_CHECK(x.dtype() == DType::bf16 && x.device().is_cpu(), "linear_bf16: expected a bf16 CPU input, got {} on {}",
               x.dtype(), x.device());
  MINIDL_CHECK(x.dim() >= 1 && x.size(-1) == w.in_features,
               "linear_bf16: input {} has {} features but the weight ({}, {}) expects {}", x.shape(),
               x.dim() >= 1 ? x.size(-1) : 0, w.out_features, w.in_features, w.in_features);
  if (bias_in.defined())
    MINIDL_CHECK(bias_in.dim() == 1 && bias_in.size(0) == w.out_features && is_floating(bias_in.dtype()),
                 "linear_bf16: bias {} {} does not match the weight (expected [{}])", bias_in.dtype(), bias_in.shape(),
                 w.out_features);
  return linear_bf16_cpu(x, Tensor(), &w, bias_in, act, f32_out);
}

}  // namespace minidl
