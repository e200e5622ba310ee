// core/dtype.h — element types (DType), the bf16 storage type, and element sizes.
//
// Header-only and dependency-free: CUDA kernels include it too.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

#if defined(__CUDACC__)
#define MINIDL_HOST_DEVICE __host__ __device__
#else
#define MINIDL_HOST_DEVICE
#endif

namespace minidl {

enum class DType : uint8_t { f32, f64, bf16, int8, int32, int64, boolean };

inline constexpr DType kAllDTypes[] = {DType::f32,  DType::f64,   DType::bf16,   DType::int8,
                                       DType::int32, DType::int64, DType::boolean};

// bfloat16: the top 16 bits of an IEEE f32. Arithmetic happens in f32; this type
// only stores. Conversion from f32 rounds to nearest, ties to even, and keeps NaN a NaN.
struct bf16 {
  uint16_t bits = 0;

  MINIDL_HOST_DEVICE static bf16 from_float(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    bf16 r;
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) {
      r.bits = static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
      return r;
    }
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    r.bits = static_cast<uint16_t>((u + rounding) >> 16);
    return r;
  }
  bf16() = default;  // defaulted: host and device alike (nvcc warns on an annotation here)
  MINIDL_HOST_DEVICE bf16(float f) : bits(from_float(f).bits) {}
  MINIDL_HOST_DEVICE operator float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
  }
};

constexpr size_t element_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::int8: return 1;
    case DType::int32: return 4;
    case DType::int64: return 8;
    case DType::boolean: return 1;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::int8: return "int8";
    case DType::int32: return "int32";
    case DType::int64: return "int64";
    case DType::boolean: return "bool";
  }
  return "?";
}

constexpr bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16; }
constexpr bool is_integral(DType t) { return !is_floating(t) && t != DType::boolean; }

// The type a binary op computes in, like PyTorch's promotion for same-kind tensors:
// bool < int8 < int32 < int64 < bf16 < f32 < f64.
constexpr int promotion_rank(DType t) {
  switch (t) {
    case DType::boolean: return 0;
    case DType::int8: return 1;
    case DType::int32: return 2;
    case DType::int64: return 3;
    case DType::bf16: return 4;
    case DType::f32: return 5;
    case DType::f64: return 6;
  }
  return 0;
}
constexpr DType promote_types(DType a, DType b) { return promotion_rank(a) >= promotion_rank(b) ? a : b; }

// C++ type <-> DType.
template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<int8_t> { static constexpr DType value = DType::int8; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::int32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::int64; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::boolean; };
template <class T> inline constexpr DType dtype_v = dtype_of<T>::value;

// The type arithmetic on a stored T is done in: bf16 computes in f32.
template <class T> struct compute_type { using type = T; };
template <> struct compute_type<bf16> { using type = float; };
template <class T> using compute_t = typename compute_type<T>::type;

}  // namespace minidl
