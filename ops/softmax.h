// ops/softmax.h — softmax and log_softmax over one dim, numerically stable.
#pragma once

#include "core/tensor.h"

namespace minidl {

Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

}  // namespace minidl
