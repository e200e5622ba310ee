#include "ops/pool.h"

#include "core/autograd.h"
#include "core/check.h"
#include "core/storage.h"
#include "cuda/kernels.h"
#include "ops/cpu/kernels.h"
#include "ops/dispatch.h"
#include "ops/factory.h"

namespace minidl {

namespace {

// Runs a 4-D pooling on a 3-D input by adding and removing the batch dim.
template <class F>
Tensor with_batch_dim(const char* op, const Tensor& x, F&& f) {
  MINIDL_CHECK(x.dim() == 3 || x.dim() == 4, "{}: input must be (N, C, H, W) or (C, H, W), got {}", op, x.shape());
  MINIDL_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64, "{}: expected f32 or f64, got {}", op, x.dtype());
  if (x.dim() == 3) return f(x.unsqueeze(0)).squeeze(0);
  return f(x);
}

Pool2dParams pool_params(const char* op, const Tensor& x, Pair kernel, Pair stride, Pair padding) {
  if (stride[0] == 0 && stride[1] == 0) stride = kernel;
  for (int i = 0; i < 2; ++i) {
    MINIDL_CHECK(kernel[i] >= 1 && stride[i] >= 1, "{}: kernel {} and stride {} must be positive", op, kernel, stride);
    MINIDL_CHECK(padding[i] >= 0 && padding[i] * 2 <= kernel[i], "{}: padding {} must be at most half the kernel {}",
                 op, padding, kernel);
    MINIDL_CHECK(x.size(2 + i) + 2 * padding[i] >= kernel[i], "{}: input {} (padding {}) is smaller than kernel {}", op,
                 x.shape(), padding, kernel);
  }
  return {kernel[0], kernel[1], stride[0], stride[1], padding[0], padding[1]};
}

Shape pooled_shape(const Tensor& x, const Pool2dParams& p) {
  return {x.size(0), x.size(1), (x.size(2) + 2 * p.pad_h - p.kernel_h) / p.stride_h + 1,
          (x.size(3) + 2 * p.pad_w - p.kernel_w) / p.stride_w + 1};
}

}  // namespace

Tensor max_pool2d(const Tensor& x_in, Pair kernel, Pair stride, Pair padding) {
  if (x_in.dtype() == DType::bf16)
    return bf16_via_f32("max_pool2d", {x_in},
                        [&](const std::vector<Tensor>& t) { return max_pool2d(t[0], kernel, stride, padding); });
  return with_batch_dim("max_pool2d", x_in, [&](const Tensor& x_any) {
    Tensor x = x_any.contiguous();
    auto p = pool_params("max_pool2d", x, kernel, stride, padding);
    Shape shape = pooled_shape(x, p);
    MINIDL_CHECK(x.size(2) * x.size(3) < (int64_t{1} << 31),
                 "max_pool2d: input {} has planes of 2^31 or more elements; not supported", x.shape());
    Tensor y = empty(shape, {.dtype = x.dtype(), .device = x.device()});
    const bool on_cuda = x.device().is_cuda();
    if (!any_requires_grad({x})) {  // inference: no winners to remember
      if (on_cuda)
        cuda::max_pool2d_forward(y.arg(), nullptr, x.arg(), p);
      else
        cpu::max_pool2d_forward(y.arg(), nullptr, x.arg(), p);
      return y;
    }
    // Each output's winner as an offset in its plane, for the backward: 32 bits, half
    // the traffic of int64 indices (no tensor dtype is needed: nothing else reads them).
    auto argmax = std::make_shared<Storage>(static_cast<size_t>(y.numel()) * sizeof(int32_t), x.device());
    auto* winners = static_cast<int32_t*>(argmax->data());
    if (on_cuda)
      cuda::max_pool2d_forward(y.arg(), winners, x.arg(), p);
    else
      cpu::max_pool2d_forward(y.arg(), winners, x.arg(), p);
    record(y, "MaxPool2dBackward", {x}, [argmax, shape = x.shape()](const Tensor& g, const NeedsGrad&) {
      Tensor gx = empty(shape, {.dtype = g.dtype(), .device = g.device()});
      const auto* winners = static_cast<const int32_t*>(argmax->data());
      if (g.device().is_cuda())
        cuda::max_pool2d_backward(gx.arg(), g.contiguous().arg(), winners);
      else
        cpu::max_pool2d_backward(gx.arg(), g.contiguous().arg(), winners);
      return grads{gx};
    });
    return y;
  });
}

Tensor avg_pool2d(const Tensor& x_in, Pair kernel, Pair stride, Pair padding, bool count_include_pad) {
  if (x_in.dtype() == DType::bf16)
    return bf16_via_f32("avg_pool2d", {x_in}, [&](const std::vector<Tensor>& t) {
      return avg_pool2d(t[0], kernel, stride, padding, count_include_pad);
    });
  return with_batch_dim("avg_pool2d", x_in, [&](const Tensor& x_any) {
    Tensor x = x_any.contiguous();
    auto p = pool_params("avg_pool2d", x, kernel, stride, padding);
    p.count_include_pad = count_include_pad;
    Tensor y = empty(pooled_shape(x, p), {.dtype = x.dtype(), .device = x.device()});
    if (x.device().is_cuda())
      cuda::avg_pool2d_forward(y.arg(), x.arg(), p);
    else
      cpu::avg_pool2d_forward(y.arg(), x.arg(), p);
    record(y, "AvgPool2dBackward", {x}, [p, shape = x.shape()](const Tensor& g, const NeedsGrad&) {
      Tensor gx = empty(shape, {.dtype = g.dtype(), .device = g.device()});
      if (g.device().is_cuda())
        cuda::avg_pool2d_backward(gx.arg(), g.contiguous().arg(), p);
      else
        cpu::avg_pool2d_backward(gx.arg(), g.contiguous().arg(), p);
      return grads{gx};
    });
    return y;
  });
}

Tensor adaptive_avg_pool2d(const Tensor& x_in, Pair output_size) {
  if (x_in.dtype() == DType::bf16)
    return bf16_via_f32("adaptive_avg_pool2d", {x_in},
                        [&](const std::vector<Tensor>& t) { return adaptive_avg_pool2d(t[0], output_size); });
  return with_batch_dim("adaptive_avg_pool2d", x_in, [&](const Tensor& x_any) {
    Tensor x = x_any.contiguous();
    MINIDL_CHECK(output_size[0] >= 1 && output_size[1] >= 1, "adaptive_avg_pool2d: output size {} must be positive",
                 output_size);
    Tensor y =
        empty({x.size(0), x.size(1), output_size[0], output_size[1]}, {.dtype = x.dtype(), .device = x.device()});
    if (x.device().is_cuda())
      cuda::adaptive_avg_pool2d_forward(y.arg(), x.arg());
    else
      cpu::adaptive_avg_pool2d_forward(y.arg(), x.arg());
    record(y, "AdaptiveAvgPool2dBackward", {x}, [shape = x.shape()](const Tensor& g, const NeedsGrad&) {
      Tensor gx = empty(shape, {.dtype = g.dtype(), .device = g.device()});
      if (g.device().is_cuda())
        cuda::adaptive_avg_pool2d_backward(gx.arg(), g.contiguous().arg());
      else
        cpu::adaptive_avg_pool2d_backward(gx.arg(), g.contiguous().arg());
      return grads{gx};
    });
    return y;
  });
}

}  // namespace minidl
