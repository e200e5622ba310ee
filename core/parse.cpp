#include "core/parse.h"

#include <charconv>
#include <cmath>

namespace minidl {

namespace {

// std::from_chars reads '-' but not '+', and stops without complaint at the
// first character it cannot use: both are handled here, once.
template <class T>
std::optional<T> whole_text(std::string_view text) {
  if (text.starts_with('+')) {
    text.remove_prefix(1);
    if (text.starts_with('-')) return std::nullopt;  // "+-1"
  }
  T value{};
  const char* end = text.data() + text.size();
  const auto [stop, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc() || stop != end) return std::nullopt;
  return value;
}

}  // namespace

std::optional<int64_t> parse_int(std::string_view text) { return whole_text<int64_t>(text); }

std::optional<double> parse_real(std::string_view text) {
  std::optional<double> v = whole_text<double>(text);
  if (v && !std::isfinite(*v)) return std::nullopt;  // from_chars reads "inf" and "nan"
  return v;
}

std::optional<std::vector<int64_t>> parse_dims(std::string_view text) {
  std::vector<int64_t> dims;
  while (true) {
    const size_t x = text.find('x');
    const std::string_view part = text.substr(0, x);
    if (part.empty() || part.front() < '0' || part.front() > '9') return std::nullopt;  // no sign
    const std::optional<int64_t> d = parse_int(part);
    if (!d || *d < 1) return std::nullopt;
    dims.push_back(*d);
    if (x == std::string_view::npos) return dims;
    text.remove_prefix(x + 1);
  }
}

}  // namespace minidl
