// ops/cpu/reduce.cpp — reductions over the rows of a (rows, cols) contiguous view.
//
// The op layer moves the reduced dims last and makes them contiguous, so one
// row-wise kernel serves every reduction over any set of dims. Sums accumulate in
// double so long f32 rows stay accurate, in 16 vector lanes (lane_sum).
//
// Two ways to use the threads: many rows (a reduction over one dim of a batch) run
// in parallel, a row per thread at a time; a few long rows (sum() of a whole
// tensor is one row) split each row's columns among the threads, each reducing
// its chunk, and the partials are combined in chunk order — so the answer does
// not depend on which thread finished first.
#include <cmath>
#include <limits>
#include <vector>

#include "core/dtype_dispatch.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"

namespace minidl::cpu {

namespace {

// The reductions of row[c0, c1), as doubles.
template <class C, class T>
double sum_range(const T* row, int64_t c0, int64_t c1) {
  return lane_sum<double>(c1 - c0, [row, c0](int64_t i) { return static_cast<double>(static_cast<C>(row[c0 + i])); });
}

// The maximum, NaN if there is one (std::max would drop it: logsumexp of a row
// with a NaN is NaN, even when the rest is ±inf).
template <class C, class T>
double max_range(const T* row, int64_t c0, int64_t c1) {
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t c = c0; c < c1; ++c) {
    const double v = static_cast<double>(static_cast<C>(row[c]));
    if (std::isnan(v)) return v;
    m = std::max(m, v);
  }
  return m;
}

template <class C, class T>
double sum_exp_range(const T* row, int64_t c0, int64_t c1, double m) {
  return lane_sum<double>(c1 - c0, [row, c0, m](int64_t i) {
    return std::exp(static_cast<double>(static_cast<C>(row[c0 + i])) - m);
  });
}

template <class C, class T>
double sum_sq_dev_range(const T* row, int64_t c0, int64_t c1, double mean) {
  return lane_sum<double>(c1 - c0, [row, c0, mean](int64_t i) {
    const double d = static_cast<double>(static_cast<C>(row[c0 + i])) - mean;
    return d * d;
  });
}

// The first extreme of row[c0, c1); a NaN wins over everything (as in PyTorch).
template <class C>
struct Extreme {
  int64_t index;
  C value;
  bool nan;
};
template <class C, class T>
Extreme<C> extreme_range(const T* row, int64_t c0, int64_t c1, bool is_max) {
  Extreme<C> best{c0, static_cast<C>(row[c0]), false};
  if constexpr (std::is_floating_point_v<C>) best.nan = std::isnan(best.value);
  for (int64_t c = c0 + 1; c < c1 && !best.nan; ++c) {
    const C v = static_cast<C>(row[c]);
    bool nan_v = false;
    if constexpr (std::is_floating_point_v<C>) nan_v = std::isnan(v);
    if (nan_v || (is_max ? v > best.value : v < best.value)) best = {c, v, nan_v};
  }
  return best;
}
// b (a later chunk) replaces a only if strictly better, or a NaN where a has none.
template <class C>
Extreme<C> later_wins(const Extreme<C>& a, const Extreme<C>& b, bool is_max) {
  if (a.nan) return a;
  if (b.nan || (is_max ? b.value > a.value : b.value < a.value)) return b;
  return a;
}

// Runs f(c0, c1) on a share of [0, cols) per thread; returns the partials in
// chunk order. Serial (one chunk) when split is false.
template <class Partial, class F>
std::vector<Partial> chunked(int64_t cols, bool split, F&& f) {
  if (!split) return {f(0, cols)};
  const int64_t chunks = max_threads();
  std::vector<Partial> parts(static_cast<size_t>(chunks));
  maybe_parallel(true, [&] {
#pragma omp for schedule(static)
    for (int64_t t = 0; t < chunks; ++t) parts[t] = f(cols * t / chunks, cols * (t + 1) / chunks);
  });
  return parts;
}

// One row: values[r] (and indices[r]) from its chunks' partials.
template <class T>
void reduce_row(ReduceOp op, const T* row, int64_t cols, bool split, double correction, T& value, int64_t* index) {
  using C = compute_t<T>;
  auto total = [](const std::vector<double>& parts) {
    double s = 0;
    for (double p : parts) s += p;
    return s;
  };
  switch (op) {
    case ReduceOp::sum:
      value = T(static_cast<C>(total(chunked<double>(cols, split, [&](int64_t a, int64_t b) {
        return sum_range<C>(row, a, b);
      }))));
      return;
    case ReduceOp::max:
    case ReduceOp::min: {
      const bool is_max = op == ReduceOp::max;
      auto parts = chunked<Extreme<C>>(cols, split, [&](int64_t a, int64_t b) {
        return a < b ? extreme_range<C>(row, a, b, is_max) : Extreme<C>{-1, C(0), false};
      });
      Extreme<C> best = parts[0];
      for (size_t i = 1; i < parts.size(); ++i)
        if (parts[i].index >= 0) best = later_wins(best, parts[i], is_max);
      value = row[best.index];
      if (index) *index = best.index;
      return;
    }
    case ReduceOp::logsumexp: {
      // log Σ e^x = m + log Σ e^(x - m), m = max: no overflow for any finite x.
      double m = -std::numeric_limits<double>::infinity();
      for (double p : chunked<double>(cols, split, [&](int64_t a, int64_t b) { return max_range<C>(row, a, b); }))
        m = std::isnan(p) || std::isnan(m) ? std::numeric_limits<double>::quiet_NaN() : std::max(m, p);
      if (std::isinf(m) || std::isnan(m)) {  // all −inf: −inf; a +inf: +inf; a NaN: NaN
        value = T(static_cast<C>(m));
        return;
      }
      const double s = total(chunked<double>(cols, split, [&](int64_t a, int64_t b) {
        return sum_exp_range<C>(row, a, b, m);
      }));
      value = T(static_cast<C>(m + std::log(s)));
      return;
    }
    case ReduceOp::var: {
      // Two passes: the mean first, then squared deviations (no cancellation).
      const double mean = total(chunked<double>(cols, split, [&](int64_t a, int64_t b) {
        return sum_range<C>(row, a, b);
      })) / static_cast<double>(cols);
      const double ss = total(chunked<double>(cols, split, [&](int64_t a, int64_t b) {
        return sum_sq_dev_range<C>(row, a, b, mean);
      }));
      const double denom = static_cast<double>(cols) - correction;
      value = T(static_cast<C>(denom > 0 ? ss / denom : std::numeric_limits<double>::quiet_NaN()));
      return;
    }
  }
}

}  // namespace

void reduce_rows(ReduceOp op, const TensorArg& values, const TensorArg& indices, const TensorArg& x,
                 double correction) {
  const int64_t rows = x.shape[0], cols = x.shape[1];
  dispatch_numeric(x.dtype, "reduce", [&](auto tag) {
    using T = decltype(tag);
    const T* in = x.ptr<T>();
    T* out = values.ptr<T>();
    int64_t* idx = indices.data ? indices.ptr<int64_t>() : nullptr;
    const bool big = rows * cols > kParallelGrain && !in_parallel();
    if (big && rows < max_threads()) {  // few long rows: split the columns
      for (int64_t r = 0; r < rows; ++r)
        reduce_row(op, in + r * cols, cols, true, correction, out[r], idx ? idx + r : nullptr);
      return;
    }
#pragma omp parallel for if (big)
    for (int64_t r = 0; r < rows; ++r)
      reduce_row(op, in + r * cols, cols, false, correction, out[r], idx ? idx + r : nullptr);
  });
}

}  // namespace minidl::cpu
