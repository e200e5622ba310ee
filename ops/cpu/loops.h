// ops/cpu/loops.h — the strided loop every elementwise CPU kernel runs on.
//
// for_each_offset visits every index of `shape` in row-major order and hands the
// body the element offsets of N operands (each with its own strides, 0 for a
// broadcast dim). The innermost dim is a plain loop with a fixed stride so the
// compiler can vectorise it when the strides are 1. Large loops are split into
// contiguous ranges of linear indices, one per OpenMP thread.
#pragma once

#include <array>
#include <cstdint>

#include <algorithm>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/kernel_arg.h"

namespace minidl::cpu {

// Below this many elements a parallel region costs more than it saves.
inline constexpr int64_t kParallelGrain = 32768;

template <size_t N, class Body>
void for_each_offset(const TensorArg& shape_of, const std::array<const TensorArg*, N>& operands, Body&& body) {
  const int ndim = shape_of.ndim;
  const int64_t numel = shape_of.numel();
  if (numel == 0) return;
  if (ndim == 0) {
    std::array<int64_t, N> off{};
    body(off);
    return;
  }
  const int64_t inner = shape_of.shape[ndim - 1];
  std::array<int64_t, N> inner_stride;
  for (size_t k = 0; k < N; ++k) inner_stride[k] = operands[k]->strides[ndim - 1];

  auto run_range = [&](int64_t begin, int64_t end) {
    // Coordinates of `begin`, then walk forward one inner row at a time.
    int64_t coord[kMaxDims];
    int64_t rest = begin;
    for (int d = ndim - 1; d >= 0; --d) {
      coord[d] = rest % shape_of.shape[d];
      rest /= shape_of.shape[d];
    }
    int64_t i = begin;
    while (i < end) {
      std::array<int64_t, N> off{};
      for (size_t k = 0; k < N; ++k)
        for (int d = 0; d < ndim; ++d) off[k] += coord[d] * operands[k]->strides[d];
      int64_t count = std::min(inner - coord[ndim - 1], end - i);
      for (int64_t j = 0; j < count; ++j) {
        body(off);
        for (size_t k = 0; k < N; ++k) off[k] += inner_stride[k];
      }
      i += count;
      coord[ndim - 1] += count;
      for (int d = ndim - 1; d > 0 && coord[d] == shape_of.shape[d]; --d) {
        coord[d] = 0;
        ++coord[d - 1];
      }
    }
  };

  if (numel < kParallelGrain) {
    run_range(0, numel);
    return;
  }
#pragma omp parallel
  {
#ifdef _OPENMP
    int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
#else
    int64_t threads = 1, t = 0;
#endif
    int64_t chunk = (numel + threads - 1) / threads;
    int64_t begin = std::min(numel, t * chunk), end = std::min(numel, begin + chunk);
    if (begin < end) run_range(begin, end);
  }
}

}  // namespace minidl::cpu
