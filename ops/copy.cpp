// ops/copy.cpp — the Tensor methods that move or convert data: copy_, fill_,
// contiguous, clone, to(device), to(dtype), item, to_vector.
//
// (Declared in core/tensor.h; defined here because they run kernels.)
#include "core/autograd.h"
#include "core/check.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "ops/cpu/kernels.h"
#include "ops/dispatch.h"
#include "ops/factory.h"

namespace minidl {

Tensor& Tensor::fill_(double value) {
  check_inplace("fill_");
  bump_version();
  if (device().is_cpu()) {
    cpu::fill(arg(), value);
  } else {
    cuda::fill(arg(), value, device().index);
  }
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace("copy_");
  src.check_defined("copy_");
  broadcast_shapes("copy_", src.shape(), shape());
  MINIDL_CHECK(src.dim() <= dim(), "copy_: cannot copy a tensor of shape {} into one of shape {}", src.shape(),
               shape());
  if (numel() == 0) return *this;
  bump_version();
  Device from = src.device(), to = device();
  if (from.is_cpu() && to.is_cpu()) {
    // A source that shares our storage (x.copy_(x.t())) is read from a private copy first.
    if (src.storage() == storage()) {
      NoGradGuard no_grad;
      Tensor staged = empty(src.shape(), {.dtype = src.dtype()});
      cpu::copy(staged.arg(), src.arg());
      cpu::copy(arg(), broadcast_arg(staged, shape()));
      return *this;
    }
    cpu::copy(arg(), broadcast_arg(src, shape()));
    return *this;
  }
  NoGradGuard no_grad;
  if (from == to) {  // on one GPU: the CUDA copy kernel walks strides, broadcasts and converts
    if (src.storage() == storage()) {  // overlapping: read from a private copy first, as on the CPU
      Tensor staged = empty(src.shape(), {.dtype = src.dtype(), .device = from});
      cuda::copy(staged.arg(), src.arg());
      cuda::copy(arg(), broadcast_arg(staged, shape()));
    } else {
      cuda::copy(arg(), broadcast_arg(src, shape()));
    }
    return *this;
  }
  // Crossing a device boundary: move exactly dst's bytes, contiguous and in
  // dst's dtype, then let the kernel on the far side scatter them into dst's strides.
  if (from.is_cpu()) {  // host -> device
    Tensor staged = empty(shape(), {.dtype = dtype()});
    cpu::copy(staged.arg(), broadcast_arg(src, shape()));
    if (is_contiguous()) {
      copy_bytes(raw_data(), to, staged.raw_data(), from, staged.numel() * element_size(dtype()));
    } else {
      Tensor up = empty(shape(), {.dtype = dtype(), .device = to});
      copy_bytes(up.raw_data(), to, staged.raw_data(), from, staged.numel() * element_size(dtype()));
      cuda::copy(arg(), up.arg());
    }
    return *this;
  }
  // From a device: first a contiguous copy of src broadcast to our shape, in our dtype, on its device.
  Tensor packed = src;
  if (!src.is_contiguous() || src.shape() != shape() || src.dtype() != dtype()) {
    packed = empty(shape(), {.dtype = dtype(), .device = from});
    cuda::copy(packed.arg(), broadcast_arg(src, shape()));
  }
  if (to.is_cpu()) {  // device -> host
    if (is_contiguous()) {
      copy_bytes(raw_data(), kCPU, packed.raw_data(), from, numel() * element_size(dtype()));
    } else {
      Tensor staged = empty(shape(), {.dtype = dtype()});
      copy_bytes(staged.raw_data(), kCPU, packed.raw_data(), from, numel() * element_size(dtype()));
      cpu::copy(arg(), staged.arg());
    }
    return *this;
  }
  // device -> another device
  MINIDL_CHECK(is_contiguous(), "copy_: a copy between two CUDA devices needs a contiguous destination, got strides {}",
               strides());
  copy_bytes(raw_data(), to, packed.raw_data(), from, numel() * element_size(dtype()));
  return *this;
}

Tensor Tensor::clone() const {
  check_defined("clone");
  Tensor out = empty(shape(), {.dtype = dtype(), .device = device()});
  {
    NoGradGuard no_grad;
    out.copy_(*this);
  }
  record(out, "CloneBackward", {*this}, [](const Tensor& g, const NeedsGrad&) { return grads{g}; });
  return out;
}

Tensor Tensor::contiguous() const {
  check_defined("contiguous");
  return is_contiguous() ? *this : clone();
}

Tensor Tensor::to(Device target) const {
  check_defined("to");
  if (target == device()) return *this;
  Tensor out = empty(shape(), {.dtype = dtype(), .device = target});
  {
    NoGradGuard no_grad;
    out.copy_(*this);
  }
  Device source = device();
  record(out, "ToDeviceBackward", {*this}, [source](const Tensor& g, const NeedsGrad&) { return grads{g.to(source)}; });
  return out;
}

Tensor Tensor::to(DType target) const {
  check_defined("to");
  if (target == dtype()) return *this;
  Tensor out = empty(shape(), {.dtype = target, .device = device()});
  {
    NoGradGuard no_grad;
    out.copy_(*this);
  }
  if (is_floating(target)) {
    DType source = dtype();
    record(out, "ToDTypeBackward", {*this}, [source](const Tensor& g, const NeedsGrad&) { return grads{g.to(source)}; });
  }
  return out;
}

double Tensor::item() const {
  check_defined("item");
  MINIDL_CHECK(numel() == 1, "item: a tensor with {} elements (shape {}) cannot be converted to a scalar", numel(),
               shape());
  NoGradGuard no_grad;
  Tensor host = empty({}, {.dtype = DType::f64});
  host.copy_(reshape({}).to(kCPU));
  return *host.data_ptr<double>();
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  check_defined("to_vector");
  NoGradGuard no_grad;
  Tensor host = empty(shape(), {.dtype = dtype_v<T>});
  host.copy_(to(kCPU));
  if constexpr (std::is_same_v<T, bool>) {
    const bool* p = host.data_ptr<bool>();
    return std::vector<bool>(p, p + host.numel());
  } else {
    const T* p = host.data_ptr<T>();
    return std::vector<T>(p, p + host.numel());
  }
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int8_t> Tensor::to_vector<int8_t>() const;
template std::vector<bool> Tensor::to_vector<bool>() const;

}  // namespace minidl
