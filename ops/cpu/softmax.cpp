// ops/cpu/softmax.cpp — softmax / log_softmax over the rows of (rows, cols).
//
// Numerically stable: subtract the row max before exp, so logits of ±1e4 give
// exact, finite results. Bandwidth-bound; rows in parallel.
#include <cmath>
#include <limits>

#include "ops/cpu/dispatch.h"
#include "ops/cpu/kernels.h"

namespace minidl::cpu {

void softmax_rows(const TensorArg& y, const TensorArg& x, bool log) {
  const int64_t rows = x.shape[0], cols = x.shape[1];
  dispatch_floating(x.dtype, log ? "log_softmax" : "softmax", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* xp = x.ptr<T>();
    T* yp = y.ptr<T>();
#pragma omp parallel for if (rows * cols > 32768)
    for (int64_t r = 0; r < rows; ++r) {
      const T* in = xp + r * cols;
      T* out = yp + r * cols;
      C m = -std::numeric_limits<C>::infinity();
      for (int64_t c = 0; c < cols; ++c) m = std::max(m, static_cast<C>(in[c]));
      if (std::isinf(m) && m < 0) m = 0;  // an all -inf row: exp gives 0s, the log -inf
      C sum = 0;
      for (int64_t c = 0; c < cols; ++c) sum += std::exp(static_cast<C>(in[c]) - m);
      if (log) {
        C log_sum = std::log(sum);
        for (int64_t c = 0; c < cols; ++c) out[c] = T(static_cast<C>(in[c]) - m - log_sum);
      } else {
        C inv = C(1) / sum;
        for (int64_t c = 0; c < cols; ++c) out[c] = T(std::exp(static_cast<C>(in[c]) - m) * inv);
      }
    }
  });
}

}  // namespace minidl::cpu
