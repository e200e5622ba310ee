#include "core/device.h"

#include <charconv>

#include "core/check.h"

namespace minidl {

Device::Device(std::string_view spec) {
  if (spec == "cpu") {
    type = DeviceType::cpu;
    return;
  }
  if (spec == "cuda") {
    type = DeviceType::cuda;
    return;
  }
  if (spec.starts_with("cuda:")) {
    std::string_view digits = spec.substr(5);
    int value = -1;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec == std::errc() && end == digits.data() + digits.size() && value >= 0) {
      type = DeviceType::cuda;
      index = value;
      return;
    }
  }
  fail("device: cannot parse '{}': expected 'cpu', 'cuda' or 'cuda:N'", spec);
}

std::string Device::str() const { return is_cpu() ? "cpu" : fmt::format("cuda:{}", index); }

}  // namespace minidl
