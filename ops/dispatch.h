// ops/dispatch.h — device checks shared by every op.
//
// Device dispatch is an explicit switch in each op (grep for `cpu::` and
// `cuda::`); these helpers only check that the operands agree.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace minidl {

// The one device all defined tensors live on; throws naming the op and both devices otherwise.
Device common_device(const char* op, const std::vector<Tensor>& tensors);

// The position of the first value of `index` (int64, any shape, on any device)
// outside [0, size) and not equal to `allowed`, or −1. The check runs on the
// index's device (find_out_of_range); only the one position comes back, and the
// op then raises its error naming the bad value.
int64_t first_out_of_range(const Tensor& index, int64_t size, int64_t allowed = INT64_MIN);
// A kernel's status word (one int64: the first bad position, or −1), read back to
// the host. While a CUDA graph is being captured no host read is possible: the
// check is skipped (−1) and the uncaptured run before the capture is what
// checked those indices (cuda::Graph, cuda/runtime.h).
int64_t read_status(const Tensor& status);
// The value at flat position `pos` of a tensor, for error messages.
int64_t value_at(const Tensor& t, int64_t pos);

// TensorArg of `t` broadcast to `shape` (stride 0 on broadcast dims), without
// making a Tensor. The caller has checked the shapes broadcast.
TensorArg broadcast_arg(const Tensor& t, const Shape& shape);

// t.arg(), or a TensorArg with null data for an undefined (optional) tensor.
inline TensorArg arg_or_null(const Tensor& t) { return t.defined() ? t.arg() : TensorArg{}; }

// NumPy broadcasting of two shapes; throws naming the op and both shapes.
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);

// bf16 for ops with no bf16 kernel of their own (pooling, batch_norm, and conv2d
// where the bf16 GEMM does not outrun the f32 one):
// the inputs widened to f32 (exact), f run on them, its result rounded back to
// bf16 — the same numbers a bf16 kernel with f32 sums gives, at f32 speed plus
// the conversions. Inference only: an input that needs a gradient is an error.
// check_bf16_inference makes those checks alone (every defined input bf16, none
// needing a gradient), for an op that widens only some of its inputs.
void check_bf16_inference(const char* op, const std::vector<Tensor>& inputs);
std::vector<Tensor> widen_bf16(const char* op, const std::vector<Tensor>& inputs);
template <class F>
Tensor bf16_via_f32(const char* op, const std::vector<Tensor>& inputs, F&& f) {
  return f(widen_bf16(op, inputs)).to(DType::bf16);
}

}  // namespace minidl
