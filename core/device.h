// core/device.h — Device: where a tensor's storage lives ("cpu", "cuda:0").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace minidl {

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  Device() = default;
  Device(DeviceType t, int i = 0) : type(t), index(i) {}
  // Parses "cpu", "cuda" (= cuda:0) or "cuda:N"; throws minidl::Error otherwise.
  Device(std::string_view spec);  // NOLINT(google-explicit-constructor): "cuda:0" reads well
  Device(const char* spec) : Device(std::string_view(spec)) {}

  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  std::string str() const;
  friend bool operator==(const Device& a, const Device& b) { return a.type == b.type && a.index == b.index; }
  friend bool operator!=(const Device& a, const Device& b) { return !(a == b); }
};

inline const Device kCPU{DeviceType::cpu, 0};

}  // namespace minidl
