// ops/dispatch.h — device checks shared by every op.
//
// Device dispatch is an explicit switch in each op (grep for `cpu::` and
// `cuda::`); these helpers only check that the operands agree.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace minidl {

// The one device all defined tensors live on; throws naming the op and both devices otherwise.
Device common_device(const char* op, const std::vector<Tensor>& tensors);

// Ops whose CUDA kernels do not exist yet call this: a CUDA tensor is a clear
// error (never a silent trip through the CPU).
void require_cpu(const char* op, Device device);

// TensorArg of `t` broadcast to `shape` (stride 0 on broadcast dims), without
// making a Tensor. The caller has checked the shapes broadcast.
TensorArg broadcast_arg(const Tensor& t, const Shape& shape);

// t.arg(), or a TensorArg with null data for an undefined (optional) tensor.
inline TensorArg arg_or_null(const Tensor& t) { return t.defined() ? t.arg() : TensorArg{}; }

// NumPy broadcasting of two shapes; throws naming the op and both shapes.
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);

}  // namespace minidl
