// cuda/reduce_kernels.cuh — the row reduction kernels of cuda/reduce.cu (sum,
// max / min with their indices, logsumexp, var), kept apart from their launcher
// so the CPU suite can also run them through tests/cuda_emulator.h
// (tests/test_cuda_emulated.cpp). In an unnamed namespace: each program that
// includes it gets its own copy.
//
// A block reduces a range of one row's columns to a Partial: what the rest of
// the row needs to know of that range — a sum; a (max, Σ e^(x − max)) pair; a
// (count, mean, Σ (x − mean)²) triple; the first extreme and its column.
// Usually the range is the whole row and the block writes the answer at once.
// A few long rows (a sum over a whole tensor: one row) would leave all but a
// few of the GPU's multiprocessors idle, so they are split: `splits` blocks
// share each row, each writes its Partial, and a second kernel combines them,
// in a fixed order — the same answer on every run.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cuda/device.cuh"
#include "ops/kernel_types.h"

namespace minidl::cuda::reduce {
namespace {

// Split a row when there are fewer rows than this many blocks, into blocks of at
// least kSplitColumns columns, so that about kSplitBlocks run in all. From the
// shape alone, not the GPU: a sum's rounding does not depend on the device.
inline constexpr int64_t kSplitBlocks = 2048;
inline constexpr int64_t kSplitColumns = 4096;

// How many blocks share each of `rows` rows of `cols` (host code).
inline int64_t split_count(int64_t rows, int64_t cols) {
  if (rows >= kSplitBlocks || cols < 2 * kSplitColumns) return 1;
  return std::min((cols + kSplitColumns - 1) / kSplitColumns, kSplitBlocks / rows);
}

// What a block found in its range of a row. By op:
//   sum        a = Σ x (and b a second sum, carried alongside: batch norm's backward
//              sums two things at once, cuda/norm_kernels.cuh)
//   logsumexp  a = max x (NaNs skipped), b = Σ e^(x − a), nan = a NaN was seen
//   var        n = count, a = mean, b = Σ (x − mean)²
//   max / min  n = the column of the first extreme (−1: none), a = its value, nan = it is a NaN
struct Partial {
  double a, b;
  int64_t n;
  bool nan;
};

__device__ inline Partial empty_partial(ReduceOp op) {
  if (op == ReduceOp::logsumexp) return {-INFINITY, 0, 0, false};
  if (op == ReduceOp::max || op == ReduceOp::min) return {0, 0, -1, false};
  return {0, 0, 0, false};
}

// Does extreme x come before extreme y? A NaN beats everything, then the larger
// (max) or smaller (min) value, then the lower column: the first extreme, as in
// PyTorch and on the CPU.
__device__ inline bool beats(const Partial& x, const Partial& y, bool is_max) {
  if (x.n < 0) return false;
  if (y.n < 0) return true;
  if (x.nan != y.nan) return x.nan;
  if (x.nan || x.a == y.a) return x.n < y.n;
  return is_max ? x.a > y.a : x.a < y.a;
}

// The Partial of two ranges from theirs.
__device__ inline Partial combine(ReduceOp op, const Partial& x, const Partial& y) {
  switch (op) {
    case ReduceOp::sum:
      return {x.a + y.a, x.b + y.b, 0, false};
    case ReduceOp::max:
    case ReduceOp::min:
      return beats(y, x, op == ReduceOp::max) ? y : x;
    case ReduceOp::logsumexp: {
      const double m = fmax(x.a, y.a);  // −inf only if both are
      if (!isfinite(m)) return {m, 0, 0, x.nan || y.nan};
      return {m, x.b * exp(x.a - m) + y.b * exp(y.a - m), 0, x.nan || y.nan};
    }
    case ReduceOp::var: {
      // Chan, Golub and LeVeque's pairwise update: exact in real arithmetic,
      // and with no Σx² − (Σx)²/n cancellation in floating point.
      if (x.n == 0) return y;
      if (y.n == 0) return x;
      const double n = static_cast<double>(x.n + y.n), delta = y.a - x.a;
      return {x.a + delta * static_cast<double>(y.n) / n,
              x.b + y.b + delta * delta * static_cast<double>(x.n) * static_cast<double>(y.n) / n, x.n + y.n, false};
    }
    default:
      return x;
  }
}

// Combines every thread's Partial; thread 0 gets the block's. A tree through
// shared memory, halving the active threads each step (blockDim.x is a power of
// two): the same order, so the same rounding, on every run.
__device__ inline Partial block_combine(ReduceOp op, Partial mine, Partial* tree) {
  const int t = threadIdx.x;
  tree[t] = mine;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (t < stride) tree[t] = combine(op, tree[t], tree[t + stride]);
    __syncthreads();
  }
  return tree[0];
}

// A row's `parts` Partials (parts_of_row[0 … parts)) combined, for thread 0:
// thread t folds parts t, t + blockDim.x, ... in order, then the block
// combines those — a fixed order, so the same rounding on every run.
__device__ inline Partial combine_parts(ReduceOp op, const Partial* parts_of_row, int64_t parts, Partial* tree) {
  Partial mine = empty_partial(op);
  for (int64_t part = threadIdx.x; part < parts; part += blockDim.x) mine = combine(op, mine, parts_of_row[part]);
  return block_combine(op, mine, tree);
}

// This block's share when `parts` blocks share each row (or channel) of n
// values: row blockIdx.x / parts, and part blockIdx.x % parts of its [0, n) —
// ⌈n / parts⌉ values, the last parts shorter or empty.
struct Share {
  int64_t row, begin, end;
};
__device__ inline Share share_of(int64_t n, int64_t parts) {
  const int64_t chunk = (n + parts - 1) / parts, begin = min(n, static_cast<int64_t>(blockIdx.x % parts) * chunk);
  return {static_cast<int64_t>(blockIdx.x / parts), begin, min(n, begin + chunk)};
}

template <class T>
__device__ double load(const T* row, int64_t c) {
  return static_cast<double>(static_cast<compute_t<T>>(row[c]));
}

// The Partial of columns [begin, end) of `row`, for thread 0. Each thread folds
// the columns begin + t, begin + t + blockDim.x, ..., then the block combines.
// logsumexp and var read the range twice: the max (mean) first, then the sum
// of exponentials (squared deviations) around it — no overflow, no cancellation.
template <class T>
__device__ Partial reduce_range(ReduceOp op, const T* row, int64_t begin, int64_t end, double* scratch, Partial* tree) {
  const int t = threadIdx.x, threads = blockDim.x;
  switch (op) {
    case ReduceOp::sum: {
      double s = 0;
      for (int64_t c = begin + t; c < end; c += threads) s += load(row, c);
      return {block_sum(s, scratch), 0, 0, false};
    }
    case ReduceOp::max:
    case ReduceOp::min: {
      const bool is_max = op == ReduceOp::max;
      Partial mine = empty_partial(op);
      for (int64_t c = begin + t; c < end; c += threads) {
        const double v = load(row, c);
        const Partial e{v, 0, c, static_cast<bool>(isnan(v))};
        if (beats(e, mine, is_max)) mine = e;
      }
      return block_combine(op, mine, tree);
    }
    case ReduceOp::logsumexp: {
      double m = -INFINITY;
      int nans = 0;  // fmax drops NaNs: counted apart
      for (int64_t c = begin + t; c < end; c += threads) {
        const double v = load(row, c);
        nans += isnan(v);
        m = fmax(m, v);
      }
      m = block_max(m, scratch);
      const bool nan = block_sum(static_cast<double>(nans), scratch) > 0;
      if (!isfinite(m)) return {m, 0, 0, nan};  // all −inf (or empty), or a +inf: the sum is not needed
      double s = 0;
      for (int64_t c = begin + t; c < end; c += threads) s += exp(load(row, c) - m);
      return {m, block_sum(s, scratch), 0, nan};
    }
    case ReduceOp::var: {
      const int64_t n = end - begin;
      double s = 0;
      for (int64_t c = begin + t; c < end; c += threads) s += load(row, c);
      const double mean = n > 0 ? block_sum(s, scratch) / static_cast<double>(n) : 0.0;
      double d2 = 0;
      for (int64_t c = begin + t; c < end; c += threads) {
        const double d = load(row, c) - mean;
        d2 += d * d;
      }
      return {mean, block_sum(d2, scratch), n, false};
    }
    default:
      return empty_partial(op);
  }
}

// The row's answer from its Partial, by thread 0. `row` is read for max and min:
// the extreme itself is copied, not converted back from double.
template <class T>
__device__ void finish(ReduceOp op, const Partial& p, const T* row, int64_t cols, double correction, T& out,
                       int64_t* index) {
  double v = p.a;
  switch (op) {
    case ReduceOp::max:
    case ReduceOp::min:
      if (p.n < 0) return;  // an empty row has no extreme (the op layer refuses it)
      out = row[p.n];
      if (index) *index = p.n;
      return;
    case ReduceOp::logsumexp:
      // a NaN: NaN; all −inf: −inf; a +inf: +inf
      v = p.nan ? NAN : isfinite(p.a) ? p.a + log(p.b) : p.a;
      break;
    case ReduceOp::var: {
      const double denom = static_cast<double>(cols) - correction;
      v = denom > 0 ? p.b / denom : NAN;
      break;
    }
    default:
      break;
  }
  out = T(static_cast<compute_t<T>>(v));
}

// Block b reduces part b % splits of row b / splits (parts of ⌈cols / splits⌉
// columns). With one part per row it writes the answer; otherwise its Partial,
// to partials[b], for combine_kernel. blockDim.x is a power of two, ≤ kThreads.
template <class T>
__global__ void reduce_rows_kernel(ReduceOp op, TensorArg values, int64_t* indices, TensorArg x, double correction,
                                   int64_t splits, Partial* partials) {
  __shared__ double scratch[kWarp];
  __shared__ Partial tree[kThreads];
  const int64_t cols = x.shape[1];
  const Share share = share_of(cols, splits);
  const T* row = x.ptr<T>() + share.row * cols;
  const Partial p = reduce_range(op, row, share.begin, share.end, scratch, tree);
  if (threadIdx.x != 0) return;
  if (splits == 1)
    finish(op, p, row, cols, correction, values.ptr<T>()[share.row], indices ? indices + share.row : nullptr);
  else
    partials[blockIdx.x] = p;
}

// Block r combines row r's `splits` Partials and writes the row's answer.
template <class T>
__global__ void combine_kernel(ReduceOp op, TensorArg values, int64_t* indices, TensorArg x, double correction,
                               int64_t splits, const Partial* partials) {
  __shared__ Partial tree[kThreads];
  const int64_t cols = x.shape[1], r = blockIdx.x;
  const Partial p = combine_parts(op, partials + r * splits, splits, tree);
  if (threadIdx.x == 0)
    finish(op, p, x.ptr<T>() + r * cols, cols, correction, values.ptr<T>()[r], indices ? indices + r : nullptr);
}

// out[r] = the sum of row r's parts' sums (Partial::a), in a fixed order:
// for kernels that split a plain sum (the convolution's bias gradient).
template <class T>
__global__ void sum_parts_kernel(T* out, int64_t parts, const Partial* partials) {
  __shared__ Partial tree[kThreads];
  const Partial all = combine_parts(ReduceOp::sum, partials + blockIdx.x * parts, parts, tree);
  if (threadIdx.x == 0) out[blockIdx.x] = static_cast<T>(all.a);
}

}  // namespace
}  // namespace minidl::cuda::reduce
