// tests/tensor_literals.h — small tensors written out in a test, one dtype each:
// f32({1, 2, 3, 4}, {2, 2}). One definition for every test file, so that a unity
// build (tests/CMakeLists.txt), which compiles several of them as one, sees one.
#pragma once

#include <cstdint>
#include <vector>

#include "minidl.h"

namespace minidl::testing {
inline Tensor f32(std::vector<float> v, Shape shape) { return from_vector(v, shape); }
inline Tensor f64(std::vector<double> v, Shape shape) { return from_vector(v, shape); }
inline Tensor i64(std::vector<int64_t> v, Shape shape) { return from_vector(v, shape); }
}  // namespace minidl::testing
