// ops/cpu/pool_plane.h — max pooling one plane at a time, for the two kernels
// that need it:
//   max_pool2d_forward (pool.cpp) runs one MaxPoolPlane per thread over the
//     N·C planes of its input;
//   conv2d_forward with a `max_pool` (conv.cpp; the compiled plan's
//     conv+relu+pool step) runs one per thread on each output plane while the
//     GEMM has just written it to a workspace in cache, so the convolution's
//     full-size output never goes to memory and the pooling never reads it back.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "ops/kernel_types.h"

namespace minidl::cpu {

// Planes of (H, W) pooled to (Ho, Wo) by the window p, f32 or f64. It picks the
// kernel once (the 2×2 AVX-512 one, the gather one for windows inside the plane,
// or the clipped one for padding) and owns that kernel's scratch, so it is not
// shared between threads: one object per thread.
class MaxPoolPlane {
 public:
  MaxPoolPlane(int64_t H, int64_t W, int64_t Ho, int64_t Wo, const Pool2dParams& p, DType dtype);

  // in (H, W) -> out (Ho, Wo); arg (Ho, Wo) := each winner's offset h·W + w in
  // its plane, unless arg is null (inference keeps no winners). Winners as in
  // PyTorch: the first of equals, and NaN propagates.
  template <class T>
  void run(T* out, int32_t* arg, const T* in);

 private:
  int64_t H_, W_, Ho_, Wo_;
  Pool2dParams p_;
  bool inside_;                   // no padding: every window lies in the plane
  bool two_by_two_;               // the 2×2, stride-2 AVX-512 kernel applies
  std::vector<int32_t> first_;    // the gather kernel's top-left input offset of each output
  std::vector<float> pair_best_;  // the 2×2 kernel's scratch: 2·Ho·Wo pair winners
  std::vector<int32_t> pair_at_;  // and their offsets
};

}  // namespace minidl::cpu
