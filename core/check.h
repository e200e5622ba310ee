// core/check.h — MINIDL_CHECK and fmt formatters for shapes, dtypes and devices.
//
//   MINIDL_CHECK(a.size(-1) == b.size(-2), "matmul: inner dimensions differ: {} vs {}",
//                a.shape(), b.shape());
//
// The check is always on (Release too): a failed check throws minidl::Error with
// the formatted message. Shapes (std::vector<int64_t>) print as [32, 784].
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"

#define MINIDL_CHECK(cond, ...)                                  \
  do {                                                           \
    if (!(cond)) throw ::minidl::Error(::fmt::format(__VA_ARGS__)); \
  } while (0)

namespace minidl {
template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}
}  // namespace minidl

template <>
struct fmt::formatter<minidl::DType> : fmt::formatter<std::string_view> {
  auto format(minidl::DType t, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(minidl::dtype_name(t), ctx);
  }
};
template <>
struct fmt::formatter<minidl::Device> : fmt::formatter<std::string_view> {
  auto format(const minidl::Device& d, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(d.str(), ctx);
  }
};
