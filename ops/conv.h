// ops/conv.h — 2-D convolution (cross-correlation, as in PyTorch).
#pragma once

#include <array>

#include "core/tensor.h"
#include "ops/kernel_types.h"

namespace minidl {

struct Conv2dOptions {
  std::array<int64_t, 2> stride = {1, 1};
  std::array<int64_t, 2> padding = {0, 0};
  std::array<int64_t, 2> dilation = {1, 1};
  int64_t groups = 1;
};

// x (N, C, H, W), weight (O, C/groups, kh, kw), bias (O) or undefined
//   -> (N, O, Ho, Wo), Ho = (H + 2 pad - dilation (kh - 1) - 1) / stride + 1.
//   conv2d(x, w, b, {.stride = {2, 2}, .padding = {1, 1}})
// act = Activation::relu applies the ReLU in the pass that writes y (conv then ReLU, fused).
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), const Conv2dOptions& options = {},
              Activation act = Activation::none);

// The checks every conv2d makes, whatever its dtypes and the form of its weight
// (the int8 convolution's is packed: ops/quant.h): ranks, groups, channels, bias,
// and that the kernel fits, naming `op` in the error. Returns the kernel's
// parameters and sets y's shape.
Conv2dParams conv2d_params(const char* op, const Shape& x, const Shape& weight, const Tensor& bias,
                           const Conv2dOptions& options, Activation act, Shape& y_shape);

}  // namespace minidl
