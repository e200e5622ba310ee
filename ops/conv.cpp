#include "ops/conv.h"

#include "core/autograd.h"
#include "core/check.h"
#include "cuda/kernels.h"
#include "ops/cpu/kernels.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/factory.h"
#include "ops/reduce.h"

namespace minidl {

Conv2dParams conv2d_params(const char* op, const Shape& x, const Shape& w, const Tensor& bias, const Conv2dOptions& o,
                           Activation act, Shape& y_shape) {
  MINIDL_CHECK(x.size() == 4, "{}: input must be 4-D (N, C, H, W), got {}", op, x);
  MINIDL_CHECK(w.size() == 4, "{}: weight must be 4-D (O, C/groups, kh, kw), got {}", op, w);
  const int64_t G = o.groups;
  MINIDL_CHECK(G >= 1, "{}: groups must be >= 1, got {}", op, G);
  for (int i = 0; i < 2; ++i)
    MINIDL_CHECK(o.stride[i] >= 1 && o.dilation[i] >= 1 && o.padding[i] >= 0,
                 "{}: stride {} and dilation {} must be >= 1 and padding {} >= 0", op, o.stride, o.dilation, o.padding);
  const int64_t N = x[0], C = x[1], H = x[2], W = x[3];
  const int64_t O = w[0], kh = w[2], kw = w[3];
  MINIDL_CHECK(C == w[1] * G, "{}: input {} has {} channels but weight {} with groups={} expects {}", op, x, C, w, G,
               w[1] * G);
  MINIDL_CHECK(O % G == 0, "{}: out channels {} (weight {}) are not divisible by groups={}", op, O, w, G);
  if (bias.defined())
    MINIDL_CHECK(bias.dim() == 1 && bias.size(0) == O, "{}: bias {} does not match {} out channels", op, bias.shape(),
                 O);
  const int64_t eff_h = o.dilation[0] * (kh - 1) + 1, eff_w = o.dilation[1] * (kw - 1) + 1;
  const int64_t Hp = H + 2 * o.padding[0], Wp = W + 2 * o.padding[1];
  MINIDL_CHECK(Hp >= eff_h && Wp >= eff_w, "{}: input {} (padded to {}x{}) is smaller than the dilated kernel {}x{}",
               op, x, Hp, Wp, eff_h, eff_w);
  y_shape = {N, O, (Hp - eff_h) / o.stride[0] + 1, (Wp - eff_w) / o.stride[1] + 1};
  return {o.stride[0],   o.stride[1], o.padding[0],           o.padding[1], o.dilation[0],
          o.dilation[1], G,           act == Activation::relu};
}

namespace {

// A bf16 convolution on the bf16 GEMM (a CPU where it outruns the f32 one): x
// and the bias widened to f32, which the kernel takes, the weight as it is, and
// the f32 result rounded back. Inference only, as every bf16 op.
Tensor conv2d_bf16_gemm(const Tensor& x_in, const Tensor& w_in, const Tensor& bias_in, const Conv2dOptions& o,
                        Activation act) {
  common_device("conv2d", {x_in, w_in, bias_in});         // all on the CPU, as x
  check_bf16_inference("conv2d", {x_in, w_in, bias_in});  // all bf16, and no gradient wanted
  Shape y_shape;
  const Conv2dParams p = conv2d_params("conv2d", x_in.shape(), w_in.shape(), bias_in, o, act, y_shape);
  const Tensor x = x_in.to(DType::f32).contiguous(), w = w_in.contiguous();
  const Tensor bias = bias_in.defined() ? bias_in.to(DType::f32) : Tensor();
  Tensor y = empty(y_shape);
  cpu::conv2d_forward(y.arg(), x.arg(), w.arg(), arg_or_null(bias), p);
  return y.to(DType::bf16);
}

}  // namespace

Tensor conv2d(const Tensor& x_in, const Tensor& w_in, const Tensor& bias_in, const Conv2dOptions& o, Activation act) {
  if (x_in.dtype() == DType::bf16) {
    if (x_in.device().is_cpu() && cpu::gemm_bf16_outruns_f32()) return conv2d_bf16_gemm(x_in, w_in, bias_in, o, act);
    return bf16_via_f32("conv2d", {x_in, w_in, bias_in},
                        [&](const std::vector<Tensor>& t) { return conv2d(t[0], t[1], t[2], o, act); });
  }
  Device device = common_device("conv2d", {x_in, w_in, bias_in});
  MINIDL_CHECK(x_in.dtype() == w_in.dtype() && (!bias_in.defined() || bias_in.dtype() == x_in.dtype()),
               "conv2d: dtypes differ: input {}, weight {}", x_in.dtype(), w_in.dtype());
  MINIDL_CHECK(x_in.dtype() == DType::f32 || x_in.dtype() == DType::f64, "conv2d: expected f32 or f64, got {}",
               x_in.dtype());
  Shape y_shape;
  const Conv2dParams p = conv2d_params("conv2d", x_in.shape(), w_in.shape(), bias_in, o, act, y_shape);

  Tensor x = x_in.contiguous(), w = w_in.contiguous();
  Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  Tensor y = empty(y_shape, {.dtype = x.dtype(), .device = device});
  if (device.is_cuda())
    cuda::conv2d_forward(y.arg(), x.arg(), w.arg(), arg_or_null(bias), p);
  else
    cpu::conv2d_forward(y.arg(), x.arg(), w.arg(), arg_or_null(bias), p);

  record(y, "Conv2dBackward", {x, w, bias},
         [x = saved(x), w = saved(w), y = saved(y), p](const Tensor& g_in, const NeedsGrad& needs) {
           // Through a fused ReLU the gradient counts where the output is positive: the
           // kernel masks it as it reads it.
           Tensor g = g_in.to(y.dtype()).contiguous();
           auto out = [](bool wanted, const Tensor& like) {
             return wanted ? empty(like.shape(), {.dtype = like.dtype(), .device = like.device()}) : Tensor();
           };
           Tensor gx = out(needs[0], x), gw = out(needs[1], w);
           Tensor gb = needs[2] ? empty({w.size(0)}, {.dtype = w.dtype(), .device = w.device()}) : Tensor();
           const TensorArg gxa = arg_or_null(gx), gwa = arg_or_null(gw), gba = arg_or_null(gb);
           const TensorArg relu_out = p.relu ? y.arg() : TensorArg{};
           if (x.device().is_cuda())
             cuda::conv2d_backward(gxa, gwa, gba, g.arg(), x.arg(), w.arg(), relu_out, p);
           else
             cpu::conv2d_backward(gxa, gwa, gba, g.arg(), x.arg(), w.arg(), relu_out, p);
           return grads{gx, gw, gb};
         });
  return y;
}

}  // namespace minidl
