// ops/cpu/reduce.cpp — reductions over the rows of a (rows, cols) contiguous view.
//
// The op layer moves the reduced dims last and makes them contiguous, so one
// row-wise kernel serves every reduction over any set of dims. Rows run in
// parallel; sums accumulate in double so long f32 rows stay accurate.
#include <cmath>
#include <limits>

#include "ops/cpu/dispatch.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"

namespace minidl::cpu {

void reduce_rows(ReduceOp op, const TensorArg& values, const TensorArg& indices, const TensorArg& x,
                 double correction) {
  const int64_t rows = x.shape[0], cols = x.shape[1];
  dispatch_numeric(x.dtype, "reduce", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* in = x.ptr<T>();
    T* out = values.ptr<T>();
    int64_t* idx = indices.data ? indices.ptr<int64_t>() : nullptr;
#pragma omp parallel for if (rows * cols > 32768)
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = in + r * cols;
      switch (op) {
        case ReduceOp::sum: {
          const double acc = lane_sum<double>(cols, [row](int64_t c) { return static_cast<double>(static_cast<C>(row[c])); });
          out[r] = T(static_cast<C>(acc));
          break;
        }
        case ReduceOp::max:
        case ReduceOp::min: {
          // The first extreme wins ties; a NaN wins over everything (as in PyTorch).
          int64_t best = 0;
          C best_v = static_cast<C>(row[0]);
          for (int64_t c = 1; c < cols; ++c) {
            C v = static_cast<C>(row[c]);
            bool nan_best = false, nan_v = false;
            if constexpr (std::is_floating_point_v<C>) nan_best = std::isnan(best_v), nan_v = std::isnan(v);
            if (nan_best) break;
            if (nan_v || (op == ReduceOp::max ? v > best_v : v < best_v)) best = c, best_v = v;
          }
          out[r] = row[best];
          if (idx) idx[r] = best;
          break;
        }
        case ReduceOp::logsumexp: {
          // log Σ e^x = m + log Σ e^(x - m), m = max: no overflow for any finite x.
          double m = -std::numeric_limits<double>::infinity();
          for (int64_t c = 0; c < cols; ++c) m = std::max(m, static_cast<double>(static_cast<C>(row[c])));
          double s = 0;
          if (std::isinf(m)) {
            out[r] = T(static_cast<C>(m));
            break;
          }
          for (int64_t c = 0; c < cols; ++c) s += std::exp(static_cast<double>(static_cast<C>(row[c])) - m);
          out[r] = T(static_cast<C>(m + std::log(s)));
          break;
        }
        case ReduceOp::var: {
          // Two passes: the mean first, then squared deviations (no cancellation).
          double mean = 0;
          for (int64_t c = 0; c < cols; ++c) mean += static_cast<double>(static_cast<C>(row[c]));
          mean /= static_cast<double>(cols);
          double ss = 0;
          for (int64_t c = 0; c < cols; ++c) {
            double d = static_cast<double>(static_cast<C>(row[c])) - mean;
            ss += d * d;
          }
          double denom = static_cast<double>(cols) - correction;
          out[r] = T(static_cast<C>(denom > 0 ? ss / denom : std::numeric_limits<double>::quiet_NaN()));
          break;
        }
      }
    }
  });
}

}  // namespace minidl::cpu
