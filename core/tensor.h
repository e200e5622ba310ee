// core/tensor.h — Tensor: a handle to {storage, shape, strides, offset, dtype, autograd}.
//
// A Tensor is a cheap, shared handle (like torch.Tensor): copying it copies a
// pointer, and both copies see the same data. Views (reshape, transpose, narrow,
// select, expand, ...) make new metadata over the same Storage: a write through a
// view shows in its base. Ops live in ops/ as free functions (minidl::add,
// minidl::matmul, ...); this header holds what a tensor *is*.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "core/dtype.h"
#include "core/kernel_arg.h"
#include "core/storage.h"

namespace minidl {

using Shape = std::vector<int64_t>;

class Node;
struct TensorImpl;

// Options for factories, with designated initializers:
//   zeros({2, 3}, {.dtype = DType::f64, .requires_grad = true})
// An unset dtype means the factory's own default, as in PyTorch: f32 for zeros
// and randn, int64 for randint and an integer arange, T for from_vector<T>.
// Every member has a default, so `{.requires_grad = true}` compiles without
// GCC's -Wextra warning of a missing initializer.
struct TensorOptions {
  std::optional<DType> dtype = std::nullopt;
  Device device = kCPU;
  bool requires_grad = false;

  DType dtype_or(DType fallback) const { return dtype.value_or(fallback); }
};

class Tensor {
 public:
  Tensor() = default;  // undefined: defined() is false
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}
  // A fresh, uninitialised, contiguous tensor.
  Tensor(const Shape& shape, TensorOptions options);

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  // True when both handles point at the same tensor object (not: equal values).
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }

  // ---- metadata ----
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t size(int64_t dim) const;    // negative dims count from the end
  int64_t stride(int64_t dim) const;
  int64_t dim() const;
  int64_t numel() const;
  int64_t offset() const;             // in elements, into the storage
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  // A 4-D (N, C, H, W) tensor whose memory is (N, H, W, C), "channels last" (as
  // PyTorch's memory_format): strides (H·W·C, 1, W·C, C), size-1 dims aside.
  // Such a tensor is x.permute({0, 3, 1, 2}) of a contiguous (N, H, W, C) x.
  bool is_channels_last() const;
  const std::shared_ptr<Storage>& storage() const;

  // Pointer to the first element (CPU or device memory). data_ptr<T> checks T.
  void* raw_data() const;
  template <class T> T* data_ptr() const;
  // The kernel's view of this tensor (at most kMaxDims dims).
  TensorArg arg() const;

  // ---- values ----
  double item() const;                // one element, converted to double
  template <class T> T item() const { return static_cast<T>(item()); }
  // All elements, converted, in row-major order (a copy; handy in tests and tools).
  template <class T> std::vector<T> to_vector() const;
  std::string str() const;            // PyTorch-like repr

  // ---- views: share storage, differentiable ----
  Tensor view(const Shape& shape) const;       // requires compatible strides
  Tensor reshape(const Shape& shape) const;    // view if possible, else copy
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor t() const;                            // 2-D transpose
  Tensor permute(const Shape& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;     // -1 keeps a size
  Tensor broadcast_to(const Shape& shape) const { return expand(shape); }
  Tensor squeeze() const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start_dim = 0, int64_t end_dim = -1) const;

  // ---- copies and conversions (differentiable) ----
  Tensor contiguous() const;  // self if already contiguous
  Tensor clone() const;
  Tensor to(Device device) const;
  Tensor to(DType dtype) const;

  // ---- in-place (refused on tensors that autograd tracks, unless grad mode is off) ----
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& copy_(const Tensor& src);  // broadcasts src, converts dtype, crosses devices
  // Marks the storage as written in place (the in-place ops and kernels that
  // update a tensor's memory call it); see Storage::version.
  void bump_version() const;

  // ---- autograd ----
  bool requires_grad() const;
  Tensor& requires_grad_(bool value = true);
  bool is_leaf() const;
  const Tensor& grad() const;  // undefined until a backward reaches this tensor
  void set_grad(const Tensor& grad) const;
  const std::shared_ptr<Node>& grad_fn() const;
  void retain_grad() const;
  Tensor detach() const;  // same storage, no history
  // Scalar tensors may omit grad; retain_graph keeps saved tensors for a second call.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;

 private:
  void check_defined(const char* what) const;
  void check_inplace(const char* op) const;
  // view() and reshape() once the new shape and its strides are known to fit.
  Tensor view_unchecked(Shape shape, Shape strides) const;
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;      // in elements
  int64_t offset = 0; // in elements
  DType dtype = DType::f32;

  // Autograd. A leaf has no grad_fn; a tensor produced by a tracked op has one.
  bool requires_grad = false;
  bool retains_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;
  std::weak_ptr<Node> grad_accumulator;  // leaves: the node that sums into `grad`
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Shape helpers shared by views and ops.
int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op);  // throws naming op

// A tensor's metadata over an existing storage (views are made with this).
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset);

template <class T>
T* Tensor::data_ptr() const {
  check_defined("data_ptr");
  if (dtype_v<T> != dtype()) throw Error("data_ptr: requested " + std::string(dtype_name(dtype_v<T>)) +
                                         " but tensor is " + std::string(dtype_name(dtype())));
  return static_cast<T*>(raw_data());
}

extern template std::vector<float> Tensor::to_vector<float>() const;
extern template std::vector<double> Tensor::to_vector<double>() const;
extern template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
extern template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
extern template std::vector<int8_t> Tensor::to_vector<int8_t>() const;
extern template std::vector<bool> Tensor::to_vector<bool>() const;

}  // namespace minidl
