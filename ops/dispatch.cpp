#include "ops/dispatch.h"

#include "core/autograd.h"
#include "core/check.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "ops/cpu/kernels.h"
#include "ops/factory.h"

namespace minidl {

Device common_device(const char* op, const std::vector<Tensor>& tensors) {
  const Tensor* first = nullptr;
  for (const Tensor& t : tensors) {
    if (!t.defined()) continue;
    if (!first) {
      first = &t;
      continue;
    }
    MINIDL_CHECK(t.device() == first->device(), "{}: expected all tensors on the same device, got {} and {}", op,
                 first->device(), t.device());
  }
  MINIDL_CHECK(first != nullptr, "{}: called with undefined tensors", op);
  return first->device();
}

int64_t first_out_of_range(const Tensor& index, int64_t size, int64_t allowed) {
  Tensor ix = index.contiguous();
  Tensor status = empty({1}, {.dtype = DType::int64, .device = ix.device()});
  if (ix.device().is_cuda())
    cuda::find_out_of_range(status.arg(), ix.arg(), size, allowed);
  else
    cpu::find_out_of_range(status.arg(), ix.arg(), size, allowed);
  return read_status(status);
}

int64_t read_status(const Tensor& status) {
  if (status.device().is_cuda() && cuda::capturing()) return -1;
  return status.item<int64_t>();
}

int64_t value_at(const Tensor& t, int64_t pos) { return t.reshape({-1}).narrow(0, pos, 1).item<int64_t>(); }

TensorArg broadcast_arg(const Tensor& t, const Shape& shape) {
  TensorArg a = t.arg();
  const int n = static_cast<int>(shape.size()), lead = n - a.ndim;
  MINIDL_CHECK(n <= kMaxDims, "kernels support tensors of at most {} dims, got shape {}", kMaxDims, shape);
  TensorArg out = a;
  out.ndim = n;
  for (int i = n - 1; i >= 0; --i) {
    int j = i - lead;
    bool real = j >= 0 && a.shape[j] == shape[i];
    out.shape[i] = shape[i];
    out.strides[i] = real ? a.strides[j] : 0;
  }
  return out;
}

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    MINIDL_CHECK(da == db || da == 1 || db == 1,
                 "{}: shapes {} and {} cannot be broadcast: size {} vs {} at dim {} (counting from the left of the "
                 "broadcast shape)",
                 op, a, b, da, db, i);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

void check_bf16_inference(const char* op, const std::vector<Tensor>& inputs) {
  for (const Tensor& t : inputs) {
    if (!t.defined()) continue;
    MINIDL_CHECK(t.dtype() == DType::bf16, "{}: dtypes differ: a bf16 input beside a {} one", op, t.dtype());
    MINIDL_CHECK(!(t.requires_grad() && grad_mode_enabled()),
                 "{}: bf16 runs inference only (no gradient yet): call it under NoGradGuard, or train in f32", op);
  }
}

std::vector<Tensor> widen_bf16(const char* op, const std::vector<Tensor>& inputs) {
  check_bf16_inference(op, inputs);
  std::vector<Tensor> wide;
  for (const Tensor& t : inputs) wide.push_back(t.defined() ? t.to(DType::f32) : Tensor());
  return wide;
}

}  // namespace minidl
