// ops/cpu/copy.cpp — strided copy with dtype conversion, fill, random fills, dropout's mask.
// Bandwidth-bound: one read and one write per element.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/dtype_dispatch.h"
#include "core/generator.h"
#include "core/philox.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"
#include "ops/cpu/transpose8.h"

namespace minidl::cpu {

namespace {
// Converts through the compute type so bf16 <-> anything goes via f32, and bool
// becomes 0/1. A float that does not fit the integer type saturates (NaN gives
// 0): a plain cast would be undefined behaviour in C++.
template <class To, class From>
To convert(From v) {
  using C = compute_t<From>;
  const C c = static_cast<C>(v);
  if constexpr (std::is_same_v<To, bool>) {
    return c != C(0);
  } else if constexpr (std::is_integral_v<To> && std::is_floating_point_v<C>) {
    if (std::isnan(c)) return To(0);
    constexpr double lo = static_cast<double>(std::numeric_limits<To>::min());
    constexpr double hi = static_cast<double>(std::numeric_limits<To>::max());
    const double d = static_cast<double>(c);
    if (d <= lo) return std::numeric_limits<To>::min();
    if (d >= hi) return std::numeric_limits<To>::max();
    return static_cast<To>(d);
  } else {
    return To(static_cast<compute_t<To>>(c));
  }
}
}  // namespace

namespace {
// A 2-D transpose (same dtype): dst rows contiguous, src columns contiguous.
// The strided loop would read src a whole column apart for every element, a
// cache miss each; 32×32 tiles read and write whole cache lines, so
// x.t().contiguous() runs at copy speed (the sparse kernels' xᵀ layout needs it).
bool is_transpose(const TensorArg& dst, const TensorArg& src) {
  return dst.ndim == 2 && src.ndim == 2 && dst.dtype == src.dtype && element_size(dst.dtype) == 4 &&
         dst.strides[1] == 1 && src.strides[0] == 1 && src.strides[1] != 1 && dst.shape[0] > 1 && dst.shape[1] > 1;
}

// Tiles of 32×32, each as 8×8 blocks transposed in registers (AVX2, the
// baseline); the ragged edges element by element.
void transpose32(const TensorArg& dst, const TensorArg& src) {
  constexpr int64_t kTile = 32;
  const int64_t rows = dst.shape[0], cols = dst.shape[1], ld_dst = dst.strides[0], ld_src = src.strides[1];
  const float* s = src.ptr<float>();
  float* d = dst.ptr<float>();
  const int64_t tiles_r = (rows + kTile - 1) / kTile, tiles_c = (cols + kTile - 1) / kTile;
  maybe_parallel(rows * cols >= kParallelGrain && !in_parallel(), [&] {
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tiles_r * tiles_c; ++t) {
      const int64_t r0 = t / tiles_c * kTile, c0 = t % tiles_c * kTile;
      const int64_t r1 = std::min(rows, r0 + kTile), c1 = std::min(cols, c0 + kTile);
      // dst[i, j] = src[i, j], found at s[i + j·ld_src]: column j of dst's view is contiguous in src.
      transpose_block(d + r0 * ld_dst + c0, ld_dst, s + r0 + c0 * ld_src, ld_src, r1 - r0, c1 - c0);
    }
  });
}
}  // namespace

void copy(const TensorArg& dst, const TensorArg& src) {
  if (is_transpose(dst, src)) {
    transpose32(dst, src);
    return;
  }
  dispatch_all(dst.dtype, "copy", [&](auto to_tag) {
    using To = decltype(to_tag);
    dispatch_all(src.dtype, "copy", [&](auto from_tag) {
      using From = decltype(from_tag);
      To* d = dst.ptr<To>();
      const From* s = src.ptr<From>();
      for_each_offset<2>(dst, {&dst, &src}, [&](const auto& off) { d[off[0]] = convert<To>(s[off[1]]); });
    });
  });
}

void fill(const TensorArg& dst, double value) {
  dispatch_all(dst.dtype, "fill", [&](auto tag) {
    using T = decltype(tag);
    T* d = dst.ptr<T>();
    T v = convert<T>(value);
    for_each_offset<1>(dst, {&dst}, [&](const auto& off) { d[off[0]] = v; });
  });
}

// Random fills run serially in row-major order so the stream of numbers, and so
// the tensor, depends only on the seed (not on the thread count).
template <class Draw>
static void fill_serial(const TensorArg& dst, const char* op, Draw&& draw) {
  dispatch_numeric(dst.dtype, op, [&](auto tag) {
    using T = decltype(tag);
    T* d = dst.ptr<T>();
    int64_t n = dst.numel();
    for (int64_t i = 0; i < n; ++i) d[i] = T(static_cast<compute_t<T>>(draw()));
  });
}

void fill_uniform(const TensorArg& dst, double lo, double hi, Generator& gen) {
  fill_serial(dst, "rand", [&] { return lo + (hi - lo) * gen.uniform(); });
}
void fill_normal(const TensorArg& dst, double mean, double std, Generator& gen) {
  fill_serial(dst, "randn", [&] { return mean + std * gen.normal(); });
}
void fill_randint(const TensorArg& dst, int64_t lo, int64_t hi, Generator& gen) {
  // Unsigned (wrapping) arithmetic: hi - lo may exceed INT64_MAX.
  const uint64_t range = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
  fill_serial(dst, "randint", [&] { return static_cast<int64_t>(static_cast<uint64_t>(lo) + gen.below(range)); });
}

void dropout_mask(const TensorArg& keep, double p, uint64_t key) {
  dispatch_floating(keep.dtype, "dropout", [&](auto tag) {
    using T = decltype(tag);
    T* d = keep.ptr<T>();
    const uint32_t threshold = dropout_keep_threshold(p);
    const T scale = T(static_cast<compute_t<T>>(1 / (1 - p)));
    const int64_t n = keep.numel();
    // Counter-based: the mask does not depend on the thread count.
    parallel_for(n > kParallelGrain, n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) d[i] = dropout_bits(key, static_cast<uint64_t>(i)) >= threshold ? scale : T(0);
    });
  });
}

}  // namespace minidl::cpu
