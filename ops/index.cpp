#include "ops/index.h"

#include "core/autograd.h"
#include "core/check.h"
#include "cuda/kernels.h"
#include "ops/cpu/kernels.h"
#include "ops/dispatch.h"
#include "ops/factory.h"

namespace minidl {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  MINIDL_CHECK(!tensors.empty(), "cat: expected a non-empty list of tensors");
  const Tensor& first = tensors[0];
  MINIDL_CHECK(first.dim() > 0, "cat: zero-dimensional tensors cannot be concatenated; use stack");
  int64_t d = normalize_dim(dim, first.dim(), "cat");
  Device device = common_device("cat", tensors);
  Shape shape = first.shape();
  shape[d] = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    MINIDL_CHECK(t.dtype() == first.dtype(), "cat: tensor {} has dtype {} but tensor 0 has {}", i, t.dtype(),
                 first.dtype());
    bool same = t.dim() == first.dim();
    for (int64_t k = 0; same && k < t.dim(); ++k) same = k == d || t.size(k) == first.size(k);
    MINIDL_CHECK(same, "cat: tensor {} has shape {} but tensor 0 has shape {}; sizes must match except in dim {}", i,
                 t.shape(), first.shape(), d);
    shape[d] += t.size(d);
  }
  Tensor out = empty(shape, {.dtype = first.dtype(), .device = device});
  Shape sizes;
  {
    NoGradGuard no_grad;
    int64_t offset = 0;
    for (const Tensor& t : tensors) {
      out.narrow(d, offset, t.size(d)).copy_(t);
      offset += t.size(d);
      sizes.push_back(t.size(d));
    }
  }
  record(out, "CatBackward", tensors, [d, sizes](const Tensor& g, const NeedsGrad& needs) {
    grads out_grads;
    int64_t offset = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      out_grads.push_back(needs[i] ? g.narrow(d, offset, sizes[i]) : Tensor());
      offset += sizes[i];
    }
    return out_grads;
  });
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  MINIDL_CHECK(!tensors.empty(), "stack: expected a non-empty list of tensors");
  int64_t d = normalize_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> expanded;
  for (size_t i = 0; i < tensors.size(); ++i) {
    MINIDL_CHECK(tensors[i].shape() == tensors[0].shape(), "stack: tensor {} has shape {} but tensor 0 has shape {}",
                 i, tensors[i].shape(), tensors[0].shape());
    expanded.push_back(tensors[i].unsqueeze(d));
  }
  return cat(expanded, d);
}

namespace {
// Checks index is int64 with every value in [0, size), naming the op and the bad value.
void check_indices(const char* op, const Tensor& index, int64_t size) {
  MINIDL_CHECK(index.dtype() == DType::int64, "{}: index must be int64, got {}", op, index.dtype());
  const int64_t bad = first_out_of_range(index, size);
  if (bad >= 0) fail("{}: index {} (at position {}) is out of range for size {}", op, value_at(index, bad), bad, size);
}

// x viewed as (outer, size_d, inner), contiguous.
TensorArg three_d(const Tensor& x, int64_t d) {
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < d; ++k) outer *= x.size(k);
  for (int64_t k = d + 1; k < x.dim(); ++k) inner *= x.size(k);
  return x.reshape({outer, x.dim() == 0 ? 1 : x.size(d), inner}).arg();
}
}  // namespace

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  int64_t d = normalize_dim(dim, x.dim(), "index_select");
  MINIDL_CHECK(index.dim() == 1, "index_select: index must be 1-D, got shape {}", index.shape());
  Device device = common_device("index_select", {x, index});
  check_indices("index_select", index, x.dim() == 0 ? 1 : x.size(d));
  Shape shape = x.shape();
  if (!shape.empty()) shape[d] = index.size(0);
  Tensor out = empty(shape, {.dtype = x.dtype(), .device = device});
  {
    NoGradGuard no_grad;
    Tensor xc = x.contiguous(), ic = index.contiguous();
    if (device.is_cuda()) cuda::index_select(three_d(out, d), three_d(xc, d), ic.arg());
    else cpu::index_select(three_d(out, d), three_d(xc, d), ic.arg());
  }
  record(out, "IndexSelectBackward", {x}, [shape = x.shape(), d, index = saved(index)](const Tensor& g,
                                                                                      const NeedsGrad&) {
    Tensor gx = zeros(shape, {.dtype = g.dtype(), .device = g.device()});
    Tensor gc = g.contiguous();
    if (g.device().is_cuda()) cuda::index_add(three_d(gx, d), index.contiguous().arg(), three_d(gc, d));
    else cpu::index_add(three_d(gx, d), index.contiguous().arg(), three_d(gc, d));
    return grads{gx};
  });
  return out;
}

namespace {
void check_gather_shapes(const char* op, const Tensor& x, int64_t d, const Tensor& index) {
  MINIDL_CHECK(index.dim() == x.dim(), "{}: index {} and input {} must have the same number of dims", op,
               index.shape(), x.shape());
  for (int64_t k = 0; k < x.dim(); ++k)
    MINIDL_CHECK(k == d || index.size(k) <= x.size(k),
                 "{}: index shape {} is larger than input shape {} at dim {}", op, index.shape(), x.shape(), k);
  check_indices(op, index, x.dim() == 0 ? 1 : x.size(d));
}
}  // namespace

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  int64_t d = normalize_dim(dim, x.dim(), "gather");
  Device device = common_device("gather", {x, index});
  check_gather_shapes("gather", x, d, index);
  Tensor out = empty(index.shape(), {.dtype = x.dtype(), .device = device});
  {
    NoGradGuard no_grad;
    const TensorArg xa = x.contiguous().arg(), ia = index.contiguous().arg();
    if (device.is_cuda()) cuda::gather(out.arg(), xa, ia, static_cast<int>(d));
    else cpu::gather(out.arg(), xa, ia, static_cast<int>(d));
  }
  record(out, "GatherBackward", {x}, [shape = x.shape(), d, index = saved(index)](const Tensor& g, const NeedsGrad&) {
    return grads{scatter_add(zeros(shape, {.dtype = g.dtype(), .device = g.device()}), d, index, g)};
  });
  return out;
}

Tensor scatter_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src) {
  int64_t d = normalize_dim(dim, self.dim(), "scatter_add");
  Device device = common_device("scatter_add", {self, index, src});
  MINIDL_CHECK(src.shape() == index.shape(), "scatter_add: src shape {} must equal index shape {}", src.shape(),
               index.shape());
  MINIDL_CHECK(src.dtype() == self.dtype(), "scatter_add: src dtype {} differs from self dtype {}", src.dtype(),
               self.dtype());
  check_gather_shapes("scatter_add", self, d, index);
  Tensor out;
  {
    NoGradGuard no_grad;
    out = self.clone();
    const TensorArg ia = index.contiguous().arg(), sa = src.contiguous().arg();
    if (device.is_cuda()) cuda::scatter_add(out.arg(), ia, sa, static_cast<int>(d));
    else cpu::scatter_add(out.arg(), ia, sa, static_cast<int>(d));
  }
  record(out, "ScatterAddBackward", {self, src}, [d, index = saved(index)](const Tensor& g, const NeedsGrad& needs) {
    return grads{needs[0] ? g : Tensor(), needs[1] ? gather(g, d, index) : Tensor()};
  });
  return out;
}

}  // namespace minidl
