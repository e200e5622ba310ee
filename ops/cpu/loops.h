// ops/cpu/loops.h — the strided loop every elementwise CPU kernel runs on.
//
// for_each_offset visits every index of `shape` in row-major order and hands the
// body the element offsets of N operands (each with its own strides, 0 for a
// broadcast dim). Three things make it fast:
//   1. Dims are coalesced first: two neighbouring dims that every operand walks
//      as one (stride[d] == stride[d+1] * shape[d+1]) become one dim, so a
//      contiguous tensor, whatever its rank, is a single long row.
//   2. When every operand's innermost stride is 1 the inner loop is written with
//      offsets base + j, a form the compiler vectorises (with a run-time overlap
//      check where it cannot prove the pointers apart).
//   3. Large loops are split into contiguous ranges of linear indices, one per
//      OpenMP thread; small ones stay on the calling thread.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/kernel_arg.h"

namespace minidl::cpu {

// Below this many elements a parallel region costs more than it saves.
inline constexpr int64_t kParallelGrain = 32768;
// A GEMV (a few rows against a weight) goes to a second thread from this many
// multiply-adds; measured for the f32 one in gemm.cpp's gemm_small_m.
inline constexpr int64_t kGemvParallelMacs = 49152;

// OpenMP queries that also compile without OpenMP.
inline int64_t max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
inline int64_t thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
inline int64_t team_size() {  // threads in the current team (1 outside a parallel region)
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}
inline bool in_parallel() {
#ifdef _OPENMP
  return omp_in_parallel();
#else
  return false;
#endif
}

// Whether parallel_for and parallel_reduce split a loop of n iterations: when
// asked to, with two or more iterations and threads, and this thread is not
// already on a team (a nested region would get one thread anyway).
inline bool splits(bool parallel, int64_t n) { return parallel && n >= 2 && max_threads() >= 2 && !in_parallel(); }

// body(begin, end) over [0, n): one contiguous range per thread of a new team
// when it splits, thread t of T taking [n·t/T, n·(t+1)/T) as `schedule(static)`
// would; otherwise all of [0, n) in one call on this thread.
//
// Why not `#pragma omp parallel for if (parallel)`: with the condition false,
// GCC's libgomp still opens a region of one thread, and the barrier that closes
// it wakes any waiters with a futex system call even when there are none —
// 1.2 µs on the 2-core Zen 5 VM, as long as a batch-1 linear layer's arithmetic.
// Here the serial case is a plain call. The body takes a range rather than an
// index so that its loop runs over locals the compiler can keep in registers.
template <class Body>
void parallel_for(bool parallel, int64_t n, Body&& body) {
  if (!splits(parallel, n)) {
    body(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const int64_t threads = team_size(), t = thread_index();
    const int64_t begin = n * t / threads, end = n * (t + 1) / threads;
    if (begin < end) body(begin, end);
  }
}

// The same for a loop that folds a value, such as "the first bad index": each
// thread folds its range, body(begin, end) returning the result, and the
// threads' results are folded into `init` in thread order.
template <class T, class Body, class Fold>
T parallel_reduce(bool parallel, int64_t n, T init, Body&& body, Fold&& fold) {
  if (!splits(parallel, n)) return fold(init, body(int64_t{0}, n));
  std::vector<std::optional<T>> partial(static_cast<size_t>(max_threads()));
  parallel_for(true, n,
               [&](int64_t begin, int64_t end) { partial[static_cast<size_t>(thread_index())] = body(begin, end); });
  for (const std::optional<T>& p : partial)
    if (p) init = fold(init, *p);
  return init;
}

// The first index of [0, n) that the checks find, or n: body(begin, end)
// returns the first one in its range (end's n when none), and the earliest wins.
template <class Body>
int64_t parallel_first(bool parallel, int64_t n, Body&& body) {
  return parallel_reduce(parallel, n, n, body, [](int64_t a, int64_t b) { return std::min(a, b); });
}

// Runs body on a team of threads, or on this thread alone. Unlike
// `#pragma omp parallel if (...)`, the serial case opens no (inactive) parallel
// region, so a parallel GEMM inside it runs on the usual thread pool instead of a
// nested team created for the occasion. Worksharing inside body (`#pragma omp for`)
// splits the loop in the first case and runs all of it in the second — also when
// the caller is already on a team: there body gets a region of its own thread, or
// its `omp for` would bind to the caller's team, whose other threads are
// elsewhere (a deadlock at the loop's barrier).
template <class Body>
void maybe_parallel(bool parallel, Body&& body) {
  if (parallel) {
#pragma omp parallel
    body();
  } else if (in_parallel()) {
#pragma omp parallel num_threads(1)
    body();
  } else {
    body();
  }
}

// The iteration space after coalescing: shape[d] and each operand's strides[k][d].
template <size_t N>
struct LoopSpace {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t strides[N][kMaxDims];
};

template <size_t N>
LoopSpace<N> coalesce(const TensorArg& shape_of, const std::array<const TensorArg*, N>& operands) {
  LoopSpace<N> s;
  for (int d = 0; d < shape_of.ndim; ++d) {
    if (shape_of.shape[d] == 1) continue;  // a size-1 dim moves nothing
    bool merges = s.ndim > 0;
    for (size_t k = 0; k < N && merges; ++k)
      merges = operands[k]->strides[d] * shape_of.shape[d] == s.strides[k][s.ndim - 1];
    if (merges) {
      // The previous dim and this one are walked as one: the merged dim keeps this one's strides.
      s.shape[s.ndim - 1] *= shape_of.shape[d];
      for (size_t k = 0; k < N; ++k) s.strides[k][s.ndim - 1] = operands[k]->strides[d];
    } else {
      s.shape[s.ndim] = shape_of.shape[d];
      for (size_t k = 0; k < N; ++k) s.strides[k][s.ndim] = operands[k]->strides[d];
      ++s.ndim;
    }
  }
  return s;
}

template <size_t N, class Body>
void for_each_offset(const TensorArg& shape_of, const std::array<const TensorArg*, N>& operands, Body&& body) {
  const int64_t numel = shape_of.numel();
  if (numel == 0) return;
  const LoopSpace<N> s = coalesce(shape_of, operands);
  if (s.ndim == 0) {  // one element
    std::array<int64_t, N> off{};
    body(off);
    return;
  }
  const int ndim = s.ndim;
  const int64_t inner = s.shape[ndim - 1];
  bool unit_inner = true;
  for (size_t k = 0; k < N; ++k) unit_inner = unit_inner && s.strides[k][ndim - 1] == 1;

  auto run_range = [&](int64_t begin, int64_t end) {
    // Coordinates of `begin`, then walk forward one inner row at a time.
    int64_t coord[kMaxDims];
    int64_t rest = begin;
    for (int d = ndim - 1; d >= 0; --d) {
      coord[d] = rest % s.shape[d];
      rest /= s.shape[d];
    }
    int64_t i = begin;
    while (i < end) {
      std::array<int64_t, N> base{};
      for (size_t k = 0; k < N; ++k)
        for (int d = 0; d < ndim; ++d) base[k] += coord[d] * s.strides[k][d];
      const int64_t count = std::min(inner - coord[ndim - 1], end - i);
      if (unit_inner) {
        for (int64_t j = 0; j < count; ++j) {
          std::array<int64_t, N> off;
          for (size_t k = 0; k < N; ++k) off[k] = base[k] + j;
          body(off);
        }
      } else {
        for (int64_t j = 0; j < count; ++j) {
          std::array<int64_t, N> off;
          for (size_t k = 0; k < N; ++k) off[k] = base[k] + j * s.strides[k][ndim - 1];
          body(off);
        }
      }
      i += count;
      coord[ndim - 1] += count;
      for (int d = ndim - 1; d > 0 && coord[d] == s.shape[d]; --d) {
        coord[d] = 0;
        ++coord[d - 1];
      }
    }
  };

  parallel_for(numel >= kParallelGrain, numel, run_range);
}

// Σ_{i<n} value(i), accumulated in Acc as 16 interleaved partial sums. A single
// running sum is a chain of dependent adds the compiler may not reorder (that
// would change the rounding), so it runs one add per cycle or so; 16 independent
// sums are one vector register the vectoriser fills.
template <class Acc, class Value>
Acc lane_sum(int64_t n, Value&& value) {
  constexpr int64_t kLanes = 16;
  Acc part[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) part[l] += value(i + l);
  Acc total = 0;
  for (; i < n; ++i) total += value(i);
  for (int64_t l = 0; l < kLanes; ++l) total += part[l];
  return total;
}

// Σ_k a[k]·w_r[k] for four vectors w_0..w_3 at once (four columns of a GEMV),
// each as 16 partial sums per lane like lane_sum. One chain of sums waits on the
// multiply-add's latency; four independent ones keep the unit busy, and each
// a[k] is loaded once for the four. `load` widens an element of w to Acc
// (nothing to do for f32; a shift for bf16).
template <class Acc, class W, class Load>
std::array<Acc, 4> lane_dot4(int64_t n, const Acc* a, const W* w0, const W* w1, const W* w2, const W* w3, Load&& load) {
  constexpr int64_t kLanes = 16;
  Acc p0[kLanes] = {}, p1[kLanes] = {}, p2[kLanes] = {}, p3[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) {
      const Acc x = a[k + l];
      p0[l] += x * load(w0[k + l]), p1[l] += x * load(w1[k + l]);
      p2[l] += x * load(w2[k + l]), p3[l] += x * load(w3[k + l]);
    }
  std::array<Acc, 4> s{};
  for (; k < n; ++k)
    s[0] += a[k] * load(w0[k]), s[1] += a[k] * load(w1[k]), s[2] += a[k] * load(w2[k]), s[3] += a[k] * load(w3[k]);
  for (int64_t l = 0; l < kLanes; ++l) s[0] += p0[l], s[1] += p1[l], s[2] += p2[l], s[3] += p3[l];
  return s;
}

}  // namespace minidl::cpu
