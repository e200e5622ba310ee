// tests/test_exp.cpp — exp_f32 (ops/cpu/exp.h), the vectorised exp behind the
// elementwise exp and the fused row kernels, against the exact e^x (std::exp in
// double, rounded once): a million floats spread evenly over every bit pattern
// (so over every binade, both signs), the subnormal results, the overflow edge,
// ±0, ±inf and NaN. Run through the elementwise op on a long f32 tensor, so the
// vectorised loop is what is measured, and through the scalar function.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "minidl.h"
#include "ops/cpu/exp.h"

using namespace minidl;

namespace {
// |got − e^x| in units of the float spacing at e^x; 0 when both are the same inf or NaN.
double ulps_from_exact(float x, float got) {
  const double exact = std::exp(static_cast<double>(x));
  if (std::isnan(x)) return std::isnan(got) ? 0.0 : 1e30;
  const float rounded = static_cast<float>(exact);
  if (std::isinf(rounded)) return got == rounded ? 0.0 : 1e30;
  const double spacing = rounded == 0.0f ? std::numeric_limits<float>::denorm_min()
                                         : std::nextafter(rounded, std::numeric_limits<float>::infinity()) - rounded;
  return std::abs(static_cast<double>(got) - exact) / spacing;
}

std::vector<float> exp_through_op(const std::vector<float>& x) {
  return exp(from_vector<float>(x, {static_cast<int64_t>(x.size())})).to_vector<float>();
}
}  // namespace

TEST_CASE("exp_f32: under 1 ulp of the exact e^x over the float range, vectorised and scalar") {
  std::vector<float> x;
  for (uint64_t bits = 0; bits < (uint64_t{1} << 32); bits += 4099)
    x.push_back(std::bit_cast<float>(static_cast<uint32_t>(bits)));
  // subnormal results (e^x below 2^-126 from x < -87.34), the overflow edge, the rounding-to-0 edge
  for (float v = -87.5f; v > -104.5f; v -= 0.0137f) x.push_back(v);
  for (float v : {88.7228f, 88.72283f, 88.72284f, 88.7229f, 89.0f, 100.0f, -103.972f, -103.973f, -104.0f, -200.0f, 0.0f,
                  -0.0f, 1e-45f, -1e-45f, 1.0f, -1.0f})
    x.push_back(v);
  const std::vector<float> vec = exp_through_op(x);
  REQUIRE(vec.size() == x.size());
  double worst = 0;
  float worst_at = 0;
  int64_t subnormal = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double u = ulps_from_exact(x[i], vec[i]);
    if (u > worst) worst = u, worst_at = x[i];
    const float scalar = cpu::exp_f32(x[i]);
    const bool same = std::bit_cast<uint32_t>(vec[i]) == std::bit_cast<uint32_t>(scalar) ||
                      (std::isnan(vec[i]) && std::isnan(scalar));
    CHECK(same);  // the vector loop is the scalar function
    if (vec[i] > 0 && vec[i] < std::numeric_limits<float>::min()) ++subnormal;
    // and within 2 ulp of the library's expf
    const float lib = std::exp(x[i]);
    if (std::isfinite(lib) && lib != 0) {
      const double two_ulp = 2 * (double(std::nextafter(lib, std::numeric_limits<float>::infinity())) - lib);
      CHECK(std::abs(double(vec[i]) - lib) <= two_ulp);
    }
  }
  INFO("worst ", worst, " ulp at x = ", worst_at);
  CHECK(worst < 1.0);
  CHECK(subnormal > 1000);  // the subnormal range was really covered
}

TEST_CASE("exp_f32: the special values") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> got = exp_through_op({inf, -inf, nan, -nan, 0.0f, -0.0f, 89.0f, -104.0f, 88.0f, -1.0f});
  CHECK(got[0] == inf);
  CHECK(got[1] == 0.0f);
  CHECK(std::isnan(got[2]));
  CHECK(std::isnan(got[3]));
  CHECK(got[4] == 1.0f);
  CHECK(got[5] == 1.0f);
  CHECK(got[6] == inf);                                                   // e^89 > FLT_MAX
  CHECK(got[7] == 0.0f);                                                  // e^-104 < half the smallest subnormal
  CHECK(got[8] == doctest::Approx(1.6516362549940018e38).epsilon(1e-7));  // e^88
  CHECK(got[9] == doctest::Approx(0.36787944117144233).epsilon(1e-7));
  // f64 is untouched: std::exp itself
  CHECK(exp(from_vector<double>({1.0}, {1})).item<double>() == std::exp(1.0));
}
