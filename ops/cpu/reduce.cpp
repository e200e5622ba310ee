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
#include <algorithm>
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

// The largest (kMax) or smallest value of row[c0, c1), and whether a NaN is
// among them, as a vector reduction (`omp simd`: each vector lane keeps its own
// running extreme, combined at the end). A NaN loses every `>` and `<`, so the
// lanes pass over it and `nan` says it was there. The extreme starts at −inf
// (max) or +inf (min) — the type's lowest or highest value for integers — so
// the value found is one of the row's, unless the range is empty or all NaN.
template <class C>
struct LaneExtreme {
  C value;
  bool nan;
};
template <bool kMax, class C, class T>
LaneExtreme<C> lane_extreme(const T* row, int64_t c0, int64_t c1) {
  using limits = std::numeric_limits<C>;
  C m = limits::has_infinity ? (kMax ? -limits::infinity() : limits::infinity())
                             : (kMax ? limits::lowest() : limits::max());
  int nan = 0;
  if constexpr (kMax) {
#pragma omp simd reduction(max : m) reduction(| : nan)
    for (int64_t c = c0; c < c1; ++c) {
      const C v = static_cast<C>(row[c]);
      m = v > m ? v : m;
      nan |= v != v;
    }
  } else {
#pragma omp simd reduction(min : m) reduction(| : nan)
    for (int64_t c = c0; c < c1; ++c) {
      const C v = static_cast<C>(row[c]);
      m = v < m ? v : m;
      nan |= v != v;
    }
  }
  return {m, nan != 0};
}

// The maximum, NaN if there is one (std::max would drop it: logsumexp of a row
// with a NaN is NaN, even when the rest is ±inf); −inf for an empty range.
template <class C, class T>
double max_range(const T* row, int64_t c0, int64_t c1) {
  const LaneExtreme<C> m = lane_extreme<true, C>(row, c0, c1);
  if (m.nan) return std::numeric_limits<double>::quiet_NaN();
  if (c0 == c1) return -std::numeric_limits<double>::infinity();  // (an integer row's start is not −inf)
  return static_cast<double>(m.value);
}

// The first extreme of row[c0, c1); a NaN wins over everything (as in PyTorch).
template <class C>
struct Extreme {
  int64_t index;
  C value;
  bool nan;
};
// One comparison per element, in order: for short rows.
template <class C, class T>
Extreme<C> extreme_scalar(const T* row, int64_t c0, int64_t c1, bool is_max) {
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
// The same answer from blocks of kBlock columns, each reduced in vector lanes
// first (lane_extreme). A block is searched for the position of its extreme
// only when that beats every earlier block's — on data in no particular order,
// rarely after the first few blocks — or for its first NaN, which ends the
// search.
template <class C, class T>
Extreme<C> extreme_range(const T* row, int64_t c0, int64_t c1, bool is_max) {
  constexpr int64_t kBlock = 2048, kShort = 64;
  if (c1 - c0 < kShort) return extreme_scalar<C>(row, c0, c1, is_max);
  auto first = [row](int64_t b0, int64_t b1, auto match) {
    int64_t c = b0;
    while (c < b1 && !match(static_cast<C>(row[c]))) ++c;
    return c;
  };
  auto beats = [is_max](C a, C b) { return is_max ? a > b : a < b; };
  Extreme<C> best{-1, C(0), false};
  for (int64_t b0 = c0; b0 < c1; b0 += kBlock) {
    const int64_t b1 = std::min(c1, b0 + kBlock);
    const LaneExtreme<C> e = is_max ? lane_extreme<true, C>(row, b0, b1) : lane_extreme<false, C>(row, b0, b1);
    if (e.nan) {
      const int64_t c = first(b0, b1, [](C x) { return x != x; });
      return {c, static_cast<C>(row[c]), true};
    }
    if (best.index >= 0 && !beats(e.value, best.value)) continue;
    const int64_t c = first(b0, b1, [v = e.value](C x) { return x == v; });
    // (always found; were a compiler to start its vector lanes at ±FLT_MAX,
    // not ±inf, a block of −infs would not be: then the plain loop decides)
    const Extreme<C> mine = c < b1 ? Extreme<C>{c, e.value, false} : extreme_scalar<C>(row, b0, b1, is_max);
    if (best.index < 0 || beats(mine.value, best.value)) best = mine;
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
    parallel_for(big, rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        reduce_row(op, in + r * cols, cols, false, correction, out[r], idx ? idx + r : nullptr);
    });
  });
}

}  // namespace minidl::cpu
