// ops/cpu/copy.cpp — strided copy with dtype conversion, fill, random fills.
// Bandwidth-bound: one read and one write per element.
#include <cmath>

#include "core/generator.h"
#include "ops/cpu/dispatch.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"

namespace minidl::cpu {

namespace {
// Converts through the compute type so bf16 <-> anything goes via f32, and bool
// becomes 0/1.
template <class To, class From>
To convert(From v) {
  if constexpr (std::is_same_v<To, bool>) {
    return static_cast<compute_t<From>>(v) != compute_t<From>(0);
  } else {
    return To(static_cast<compute_t<To>>(static_cast<compute_t<From>>(v)));
  }
}
}  // namespace

void copy(const TensorArg& dst, const TensorArg& src) {
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
  uint64_t range = static_cast<uint64_t>(hi - lo);
  fill_serial(dst, "randint", [&] { return lo + static_cast<int64_t>(gen.below(range)); });
}

}  // namespace minidl::cpu
