// ops/cpu/index.cpp — index_select / index_add and gather / scatter_add.
//
// Memory-bound gathers. The op layer checks every index is in range before a
// kernel runs, so no kernel here reads or writes out of bounds.
#include <algorithm>

#include "core/dtype_dispatch.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"

namespace minidl::cpu {

void index_select(const TensorArg& out, const TensorArg& x, const TensorArg& index) {
  const int64_t outer = x.shape[0], size = x.shape[1], inner = x.shape[2], n = index.shape[0];
  const int64_t* idx = index.ptr<int64_t>();
  dispatch_all(x.dtype, "index_select", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.ptr<T>();
    T* op = out.ptr<T>();
    parallel_for(outer * n * inner > kParallelGrain, outer, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o)
        for (int64_t i = 0; i < n; ++i) std::copy_n(xp + (o * size + idx[i]) * inner, inner, op + (o * n + i) * inner);
    });
  });
}

void index_add(const TensorArg& out, const TensorArg& index, const TensorArg& src) {
  const int64_t outer = out.shape[0], size = out.shape[1], inner = out.shape[2], n = index.shape[0];
  const int64_t* idx = index.ptr<int64_t>();
  dispatch_floating(out.dtype, "index_add", [&](auto tag) {
    using T = decltype(tag);
    const T* sp = src.ptr<T>();
    T* op = out.ptr<T>();
    // Parallel over `outer` only: repeated indices add into the same row.
    parallel_for(outer * n * inner > kParallelGrain, outer, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o)
        for (int64_t i = 0; i < n; ++i)
          for (int64_t k = 0; k < inner; ++k) {
            T& dst = op[(o * size + idx[i]) * inner + k];
            dst = T(static_cast<compute_t<T>>(dst) + static_cast<compute_t<T>>(sp[(o * n + i) * inner + k]));
          }
    });
  });
}

namespace {
// Visits every element of `index` (contiguous) with its linear position and the
// position in a tensor of shape `target` that has the same coordinates except
// along `dim`, which takes the index value.
template <class F>
void for_each_indexed(const TensorArg& index, const TensorArg& target, int dim, F&& f) {
  const int64_t* idx = index.ptr<int64_t>();
  const int64_t n = index.numel();
  for (int64_t i = 0; i < n; ++i) {
    int64_t rest = i, target_pos = 0, target_stride = 1;
    for (int d = index.ndim - 1; d >= 0; --d) {
      int64_t coord = rest % index.shape[d];
      rest /= index.shape[d];
      target_pos += (d == dim ? idx[i] : coord) * target_stride;
      target_stride *= target.shape[d];
    }
    f(i, target_pos);
  }
}
}  // namespace

void gather(const TensorArg& out, const TensorArg& x, const TensorArg& index, int dim) {
  dispatch_all(x.dtype, "gather", [&](auto tag) {
    using T = decltype(tag);
    const T* xp = x.ptr<T>();
    T* op = out.ptr<T>();
    for_each_indexed(index, x, dim, [&](int64_t i, int64_t pos) { op[i] = xp[pos]; });
  });
}

void scatter_add(const TensorArg& out, const TensorArg& index, const TensorArg& src, int dim) {
  dispatch_floating(out.dtype, "scatter_add", [&](auto tag) {
    using T = decltype(tag);
    const T* sp = src.ptr<T>();
    T* op = out.ptr<T>();
    for_each_indexed(index, out, dim, [&](int64_t i, int64_t pos) {
      op[pos] = T(static_cast<compute_t<T>>(op[pos]) + static_cast<compute_t<T>>(sp[i]));
    });
  });
}

void find_out_of_range(const TensorArg& status, const TensorArg& index, int64_t size, int64_t allowed) {
  const int64_t* ix = index.ptr<int64_t>();
  const int64_t n = index.numel();
  auto first_in = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      if ((ix[i] < 0 || ix[i] >= size) && ix[i] != allowed) return i;
    return n;
  };
  const int64_t first = parallel_first(n > kParallelGrain, n, first_in);
  *status.ptr<int64_t>() = first < n ? first : -1;
}

}  // namespace minidl::cpu
