// ops/pool.h — 2-D pooling over (N, C, H, W) or (C, H, W) inputs.
#pragma once

#include <array>

#include "core/tensor.h"

namespace minidl {

using Pair = std::array<int64_t, 2>;

// Stride defaults to the kernel size (pass {0, 0}); padding is implicit -inf.
Tensor max_pool2d(const Tensor& x, Pair kernel, Pair stride = {0, 0}, Pair padding = {0, 0});
// Padding counts as zeros in the average unless count_include_pad is false.
Tensor avg_pool2d(const Tensor& x, Pair kernel, Pair stride = {0, 0}, Pair padding = {0, 0},
                  bool count_include_pad = true);
// Output (.., oh, ow); cell (i, j) averages rows [floor(i H/oh), ceil((i+1) H/oh)).
Tensor adaptive_avg_pool2d(const Tensor& x, Pair output_size);

}  // namespace minidl
