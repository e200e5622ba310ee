// ops/index.h — joining and indexing: cat, stack, index_select, gather, scatter_add.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace minidl {

// Joins along an existing dim; all other sizes must match.
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
// Joins along a new dim; all shapes must match.
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// x (..., size_d, ...) and index (n) int64 -> (..., n, ...)
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
// out[i][j][k] = x[i][index[i][j][k]][k] for dim = 1; out has index's shape, and
// index may be smaller than x in every dim but `dim`.
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
// self + src scattered: out[i][index[i][j][k]][k] += src[i][j][k] for dim = 1.
// src and index share a shape. The backward of gather.
Tensor scatter_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src);

}  // namespace minidl
