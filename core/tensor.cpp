// core/tensor.cpp — Tensor metadata, views (with their backward), autograd entry points.
//
// Copies and conversions (contiguous, clone, to, copy_, fill_, item) need a kernel,
// so they live in ops/copy.cpp; printing lives in core/print.cpp.
#include "core/tensor.h"

#include <algorithm>
#include <functional>
#include <optional>

#include "core/autograd.h"
#include "core/check.h"
#include "ops/factory.h"
#include "ops/reduce.h"

namespace minidl {

// ---------------------------------------------------------------- shape helpers

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return strides;
}

int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  MINIDL_CHECK(dim >= lo && dim <= hi, "{}: dimension {} out of range for a {}-d tensor (expected [{}, {}])",
               op, dim, ndim, lo, hi);
  return dim < 0 ? dim + std::max<int64_t>(ndim, 1) : dim;
}

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// ---------------------------------------------------------------- construction

Tensor::Tensor(const Shape& shape, TensorOptions options) {
  // Sizes must be non-negative and their product, in bytes, must fit: an
  // overflowing shape would otherwise allocate a wrong-sized buffer.
  int64_t bytes = static_cast<int64_t>(element_size(options.dtype_or(DType::f32)));
  for (int64_t s : shape) {
    MINIDL_CHECK(s >= 0, "empty: negative dimension in shape {}", shape);
    MINIDL_CHECK(!__builtin_mul_overflow(bytes, s, &bytes), "empty: shape {} is too large to allocate", shape);
  }
  impl_ = std::make_shared<TensorImpl>();
  impl_->shape = shape;
  impl_->strides = contiguous_strides(shape);
  const DType dtype = options.dtype_or(DType::f32);
  impl_->dtype = dtype;
  impl_->storage = std::make_shared<Storage>(shape_numel(shape) * element_size(dtype), options.device);
  impl_->requires_grad = options.requires_grad;
  if (options.requires_grad)
    MINIDL_CHECK(is_floating(dtype), "requires_grad: only floating-point tensors can require grad, got {}", dtype);
}

void Tensor::check_defined(const char* what) const {
  MINIDL_CHECK(impl_ != nullptr, "{}: called on an undefined tensor", what);
}

// ---------------------------------------------------------------- metadata

const Shape& Tensor::shape() const { check_defined("shape"); return impl_->shape; }
const Shape& Tensor::strides() const { check_defined("strides"); return impl_->strides; }
int64_t Tensor::dim() const { return static_cast<int64_t>(shape().size()); }
int64_t Tensor::size(int64_t d) const {
  MINIDL_CHECK(dim() > 0, "size: dimension {} requested of a 0-d tensor, which has none", d);
  return shape()[normalize_dim(d, dim(), "size")];
}
int64_t Tensor::stride(int64_t d) const {
  MINIDL_CHECK(dim() > 0, "stride: dimension {} requested of a 0-d tensor, which has none", d);
  return strides()[normalize_dim(d, dim(), "stride")];
}
int64_t Tensor::numel() const { return shape_numel(shape()); }
int64_t Tensor::offset() const { check_defined("offset"); return impl_->offset; }
DType Tensor::dtype() const { check_defined("dtype"); return impl_->dtype; }
Device Tensor::device() const { check_defined("device"); return impl_->storage->device(); }
const std::shared_ptr<Storage>& Tensor::storage() const { check_defined("storage"); return impl_->storage; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = impl_->shape.size(); i-- > 0;) {
    if (impl_->shape[i] != 1 && impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}

bool Tensor::is_channels_last() const {
  if (dim() != 4) return false;
  int64_t expected = 1;
  for (const int64_t i : {1, 3, 2, 0}) {  // C, W, H, N: innermost first
    if (impl_->shape[i] != 1 && impl_->strides[i] != expected) return false;
    expected *= impl_->shape[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  check_defined("raw_data");
  return static_cast<char*>(impl_->storage->data()) + impl_->offset * element_size(impl_->dtype);
}

TensorArg Tensor::arg() const {
  MINIDL_CHECK(dim() <= kMaxDims, "kernels support tensors of at most {} dims, got shape {}", kMaxDims, shape());
  TensorArg a;
  a.data = raw_data();
  a.dtype = dtype();
  a.ndim = static_cast<int>(dim());
  for (int i = 0; i < a.ndim; ++i) {
    a.shape[i] = impl_->shape[i];
    a.strides[i] = impl_->strides[i];
  }
  return a;
}

// ---------------------------------------------------------------- views

namespace {

// Strides for viewing (shape, strides) as new_shape without a copy, or empty if impossible.
// Walks both shapes from the right in chunks of dims that are contiguous with each other.
std::optional<Shape> view_strides(const Shape& shape, const Shape& strides, const Shape& new_shape) {
  Shape out(new_shape.size());
  if (shape_numel(shape) == 0 || shape.empty()) return contiguous_strides(new_shape);
  int64_t view_d = static_cast<int64_t>(new_shape.size()) - 1;
  int64_t chunk_base_stride = strides.back(), tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    bool chunk_ends = d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride);
    if (!chunk_ends) continue;
    while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
      out[view_d] = view_numel * chunk_base_stride;
      view_numel *= new_shape[view_d];
      --view_d;
    }
    if (view_numel != tensor_numel) return std::nullopt;
    if (d > 0) {
      chunk_base_stride = strides[d - 1];
      tensor_numel = view_numel = 1;
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

// Resolves one -1 in a requested shape and checks the element count.
Shape infer_shape(const char* op, const Shape& requested, const Shape& from) {
  Shape shape = requested;
  int64_t known = 1, infer_at = -1, numel = shape_numel(from);
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      MINIDL_CHECK(infer_at < 0, "{}: only one dimension can be -1, got {}", op, requested);
      infer_at = static_cast<int64_t>(i);
    } else {
      MINIDL_CHECK(shape[i] >= 0, "{}: invalid size {} in shape {}", op, shape[i], requested);
      known *= shape[i];
    }
  }
  if (infer_at >= 0) {
    MINIDL_CHECK(known != 0 && numel % known == 0, "{}: shape {} is invalid for input of size {}", op, requested,
                 numel);
    shape[infer_at] = numel / known;
  }
  MINIDL_CHECK(shape_numel(shape) == numel, "{}: shape {} is invalid for input of shape {} ({} elements)", op,
               requested, from, numel);
  return shape;
}

// Records a view's backward: to_base(g, base_shape) maps the gradient of the
// view back to the base's shape. When no graph is being recorded (no grad mode,
// or a base that needs no gradient) nothing is built: a view in inference is a
// new shape and strides on the same storage, and no more.
template <class ToBase>
Tensor view_with_grad(const Tensor& base, Tensor view, const char* name, ToBase to_base) {
  if (!any_requires_grad({base})) return view;
  record(view, name, {base},
         [to_base = std::move(to_base), base_shape = base.shape()](const Tensor& g, const NeedsGrad&) {
           return grads{to_base(g, base_shape)};
         });
  return view;
}

// Gradient of a view that picks part of the base: zeros with g written into the part.
Tensor scatter_into_zeros(const Tensor& g, const Shape& base_shape,
                          const std::function<Tensor(const Tensor&)>& part) {
  Tensor z = zeros(base_shape, {.dtype = g.dtype(), .device = g.device()});
  part(z).copy_(g);
  return z;
}

}  // namespace

Tensor Tensor::view(const Shape& requested) const {
  Shape new_shape = infer_shape("view", requested, shape());
  std::optional<Shape> strides = view_strides(shape(), impl_->strides, new_shape);
  MINIDL_CHECK(strides.has_value(),
               "view: shape {} is not compatible with input of shape {} and strides {}; use reshape() "
               "(which copies) or call contiguous() first",
               requested, shape(), impl_->strides);
  return view_unchecked(std::move(new_shape), std::move(*strides));
}

Tensor Tensor::reshape(const Shape& requested) const {
  Shape new_shape = infer_shape("reshape", requested, shape());
  if (std::optional<Shape> strides = view_strides(shape(), impl_->strides, new_shape))
    return view_unchecked(std::move(new_shape), std::move(*strides));
  return contiguous().view(new_shape);
}

Tensor Tensor::view_unchecked(Shape shape, Shape strides) const {
  return view_with_grad(*this, make_view(*this, std::move(shape), std::move(strides), offset()), "ViewBackward",
                        [](const Tensor& g, const Shape& base_shape) { return g.reshape(base_shape); });
}

Tensor Tensor::permute(const Shape& dims) const {
  int64_t n = dim();
  MINIDL_CHECK(static_cast<int64_t>(dims.size()) == n, "permute: got {} dims {} for a tensor of shape {}",
               dims.size(), dims, shape());
  Shape new_shape(n), new_strides(n), inverse(n);
  std::vector<bool> seen(n, false);
  for (int64_t i = 0; i < n; ++i) {
    int64_t d = normalize_dim(dims[i], n, "permute");
    MINIDL_CHECK(!seen[d], "permute: dimension {} repeats in {}", d, dims);
    seen[d] = true;
    new_shape[i] = impl_->shape[d];
    new_strides[i] = impl_->strides[d];
    inverse[d] = i;
  }
  return view_with_grad(*this, make_view(*this, std::move(new_shape), std::move(new_strides), offset()),
                        "PermuteBackward",
                        [inverse = std::move(inverse)](const Tensor& g, const Shape&) { return g.permute(inverse); });
}

// A permute of two dims, written out: every linear layer calls it on its weight,
// and the general permute's bookkeeping (the order, its inverse, which dims it
// has seen) was most of the cost of that view.
Tensor Tensor::transpose(int64_t a, int64_t b) const {
  if (dim() == 0) return *this;
  a = normalize_dim(a, dim(), "transpose"), b = normalize_dim(b, dim(), "transpose");
  Shape new_shape = shape(), new_strides = impl_->strides;
  std::swap(new_shape[a], new_shape[b]);
  std::swap(new_strides[a], new_strides[b]);
  return view_with_grad(*this, make_view(*this, std::move(new_shape), std::move(new_strides), offset()),
                        "TransposeBackward", [a, b](const Tensor& g, const Shape&) { return g.transpose(a, b); });
}

Tensor Tensor::t() const {
  MINIDL_CHECK(dim() <= 2, "t: expects a tensor with <= 2 dims, got shape {}", shape());
  return dim() < 2 ? *this : transpose(0, 1);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  MINIDL_CHECK(dim() > 0, "slice: cannot slice a 0-d tensor");
  d = normalize_dim(d, dim(), "slice");
  MINIDL_CHECK(step > 0, "slice: step must be positive, got {}", step);
  int64_t n = impl_->shape[d];
  auto clampi = [n](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + n : i, 0, n); };
  start = clampi(start);
  end = std::max(clampi(end), start);
  // A step past the end takes one element, as any step that long would: capping
  // it keeps the size's and the stride's arithmetic inside int64 for every step.
  step = std::min(step, std::max<int64_t>(end - start, 1));
  Shape new_shape = shape(), new_strides = impl_->strides;
  new_shape[d] = end > start ? (end - start - 1) / step + 1 : 0;
  new_strides[d] *= step;
  const int64_t view_offset = offset() + start * impl_->strides[d];
  return view_with_grad(*this, make_view(*this, std::move(new_shape), std::move(new_strides), view_offset),
                        "SliceBackward", [=](const Tensor& g, const Shape& base_shape) {
                          return scatter_into_zeros(g, base_shape,
                                                    [&](const Tensor& z) { return z.slice(d, start, end, step); });
                        });
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  MINIDL_CHECK(dim() > 0, "narrow: cannot narrow a 0-d tensor");
  d = normalize_dim(d, dim(), "narrow");
  int64_t n = impl_->shape[d];
  if (start < 0) start += n;
  MINIDL_CHECK(start >= 0 && start <= n && length >= 0 && length <= n - start,  // no start + length: it could overflow
               "narrow: start {} and length {} are out of range for dimension {} of size {} (shape {})", start, length,
               d, n, shape());
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  MINIDL_CHECK(dim() > 0, "select: cannot select from a 0-d tensor");
  d = normalize_dim(d, dim(), "select");
  int64_t n = impl_->shape[d];
  MINIDL_CHECK(index >= -n && index < n, "select: index {} is out of range for dimension {} of size {} (shape {})",
               index, d, n, shape());
  if (index < 0) index += n;
  Shape new_shape = shape(), new_strides = impl_->strides;
  new_shape.erase(new_shape.begin() + d);
  new_strides.erase(new_strides.begin() + d);
  const int64_t view_offset = offset() + index * impl_->strides[d];
  return view_with_grad(*this, make_view(*this, std::move(new_shape), std::move(new_strides), view_offset),
                        "SelectBackward", [=](const Tensor& g, const Shape& base_shape) {
                          return scatter_into_zeros(g, base_shape,
                                                    [&](const Tensor& z) { return z.select(d, index); });
                        });
}

Tensor Tensor::expand(const Shape& target) const {
  int64_t n = dim(), m = static_cast<int64_t>(target.size());
  MINIDL_CHECK(m >= n, "expand: the target shape {} has fewer dims than the tensor's shape {}", target, shape());
  Shape new_shape(m), new_strides(m);
  for (int64_t i = m - 1; i >= 0; --i) {
    int64_t j = i - (m - n);  // matching dim of self, or < 0 for a new leading dim
    int64_t size = j >= 0 ? impl_->shape[j] : 1;
    int64_t want = target[i] == -1 ? size : target[i];
    MINIDL_CHECK(want >= 0, "expand: invalid size {} in target shape {}", target[i], target);
    MINIDL_CHECK(j >= 0 || target[i] != -1, "expand: -1 is not allowed for the new leading dim {} in {}", i, target);
    MINIDL_CHECK(size == want || size == 1,
                 "expand: the expanded size {} must match the existing size {} at dim {} (shape {} to {})", want,
                 size, i, shape(), target);
    new_shape[i] = want;
    new_strides[i] = (j < 0 || (size == 1 && want != 1)) ? 0 : impl_->strides[j];
  }
  return view_with_grad(*this, make_view(*this, std::move(new_shape), std::move(new_strides), offset()),
                        "ExpandBackward",
                        [](const Tensor& g, const Shape& base_shape) { return sum_to(g, base_shape); });
}

Tensor Tensor::squeeze() const {
  Shape new_shape;
  for (int64_t s : shape())
    if (s != 1) new_shape.push_back(s);
  return new_shape.size() == shape().size() ? *this : reshape(new_shape);
}

Tensor Tensor::squeeze(int64_t d) const {
  d = normalize_dim(d, dim(), "squeeze");
  if (dim() == 0 || shape()[d] != 1) return *this;
  Shape new_shape = shape();
  new_shape.erase(new_shape.begin() + d);
  return reshape(new_shape);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = normalize_dim(d, dim() + 1, "unsqueeze");
  Shape new_shape = shape();
  new_shape.insert(new_shape.begin() + d, 1);
  return reshape(new_shape);
}

Tensor Tensor::flatten(int64_t start_dim, int64_t end_dim) const {
  if (dim() == 0) return reshape({1});
  start_dim = normalize_dim(start_dim, dim(), "flatten");
  end_dim = normalize_dim(end_dim, dim(), "flatten");
  MINIDL_CHECK(start_dim <= end_dim, "flatten: start_dim {} comes after end_dim {}", start_dim, end_dim);
  Shape new_shape(shape().begin(), shape().begin() + start_dim);
  int64_t n = 1;
  for (int64_t i = start_dim; i <= end_dim; ++i) n *= shape()[i];
  new_shape.push_back(n);
  new_shape.insert(new_shape.end(), shape().begin() + end_dim + 1, shape().end());
  return reshape(new_shape);
}

// ---------------------------------------------------------------- autograd

bool Tensor::requires_grad() const { check_defined("requires_grad"); return impl_->requires_grad; }
bool Tensor::is_leaf() const { check_defined("is_leaf"); return impl_->grad_fn == nullptr; }
const Tensor& Tensor::grad() const { check_defined("grad"); return impl_->grad; }
const std::shared_ptr<Node>& Tensor::grad_fn() const { check_defined("grad_fn"); return impl_->grad_fn; }

Tensor& Tensor::requires_grad_(bool value) {
  check_defined("requires_grad_");
  MINIDL_CHECK(is_leaf(), "requires_grad_: can only change the flag of a leaf tensor; use detach() first");
  MINIDL_CHECK(!value || is_floating(dtype()), "requires_grad_: only floating-point tensors can require grad, got {}",
               dtype());
  impl_->requires_grad = value;
  return *this;
}

void Tensor::set_grad(const Tensor& g) const {
  check_defined("set_grad");
  MINIDL_CHECK(!g.defined() || g.shape() == shape(), "set_grad: gradient shape {} does not match tensor shape {}",
               g.defined() ? g.shape() : Shape{}, shape());
  impl_->grad = g;
}

void Tensor::retain_grad() const {
  MINIDL_CHECK(requires_grad(), "retain_grad: tensor does not require grad");
  if (is_leaf()) return;  // leaves keep their grad anyway
  impl_->retains_grad = true;
  impl_->grad_fn->retained_output = impl_;
}

void Tensor::bump_version() const {
  check_defined("bump_version");
  impl_->storage->bump_version();
}

Tensor Tensor::detach() const {
  return make_view(*this, shape(), impl_->strides, offset());
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  check_defined("backward");
  MINIDL_CHECK(requires_grad(), "backward: tensor does not require grad and has no grad_fn (shape {})", shape());
  Tensor g = grad;
  if (!g.defined()) {
    MINIDL_CHECK(numel() == 1, "backward: grad can be implicitly created only for scalar outputs, got shape {}",
                 shape());
    g = ones(shape(), {.dtype = dtype(), .device = device()});
  }
  MINIDL_CHECK(g.shape() == shape(), "backward: gradient of shape {} does not match the tensor's shape {}", g.shape(),
               shape());
  run_backward(*this, g, retain_graph);
}

void Tensor::check_inplace(const char* op) const {
  check_defined(op);
  if (!grad_mode_enabled()) return;
  MINIDL_CHECK(!(is_leaf() && requires_grad()),
               "{}: a leaf tensor that requires grad is being used in an in-place operation; wrap the update in "
               "NoGradGuard",
               op);
  MINIDL_CHECK(!grad_fn(),
               "{}: in-place operation on a tensor that autograd recorded ({}); in-place ops are not differentiable "
               "in minidl",
               op, grad_fn()->name());
}

}  // namespace minidl
