// ops/cpu/exp.h — exp_f32: e^x for one float, written so a loop of it vectorises.
//
//   #pragma omp simd reduction(+ : sum)
//   for (int64_t c = 0; c < cols; ++c) sum += exp_f32(x[c] - max);   // 8 lanes per instruction (AVX2)
//
// glibc's expf is a scalar call: at 1000 classes it was most of the time of the
// fused losses. This one is straight-line arithmetic with no branch, no table and
// no call, so GCC turns a loop of it into vector code for whatever ISA the file
// is built for (x86-64-v3 here: 8 floats per ymm). Every select in it is a
// compare-and-blend; the files that use it are built with -fno-trapping-math
// (CMakeLists.txt), which lets GCC compute both sides of a select — without it
// GCC keeps a branch per element and does not vectorise. minidl never reads the
// floating-point exception flags, so nothing is lost.
//
// How. e^x = 2^n · e^r with n = round(x / ln 2) and r = x − n ln 2, |r| ≤ ln 2 / 2:
//   - r in two steps (Cody & Waite): ln 2 = hi + lo, where hi has 15 significant
//     bits, so n · hi is exact for |n| ≤ 150 and only the lo step rounds;
//   - e^r by its Taylor series to r⁷/7!, in Horner form with fused multiply-adds:
//     the first term left out, r⁸/8! ≤ 5·10⁻⁹, is far under a float's half-ulp
//     of 6·10⁻⁸, so the error is the arithmetic's rounding;
//   - 2^n built from its bits, in two halves 2^n1 · 2^n2, so the product is
//     right even where 2^n itself is not a normal float: results that are
//     subnormal (x down to −103.9) round once, in the last multiply, and
//     x ≥ 88.73 overflows to +inf there.
// Edge cases: x < −104 gives 0 (as e^x rounds to), x > 89 gives +inf, NaN gives
// NaN. Error: under 1 ulp of the exact e^x over the whole float range (measured
// on every seventh float: 0.92 ulp worst), so within 2 ulp of std::exp
// (tests/test_exp.cpp checks a million floats spread over every binade, the
// subnormal results, ±inf and NaN, through the vectorised elementwise exp).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace minidl::cpu {

inline float exp_f32(float x) {
  const float quiet = x + x;  // NaN in, quiet NaN out (computed always: the select below has no branch)
  const float above = std::isgreater(x, -104.0f) ? x : -104.0f;  // NaN fails the compare: also clamped
  const float xc = std::isless(above, 89.0f) ? above : 89.0f;
  // n = round(x / ln 2): adding 1.5 · 2²³ pushes the fraction bits out, rounding to nearest.
  constexpr float kRound = 12582912.0f;
  const float n = (xc * 1.44269504088896341f + kRound) - kRound;
  float r = std::fma(n, -0.693145751953125f, xc);  // hi: 15 significant bits
  r = std::fma(n, -1.428606765330187045e-06f, r);  // lo = ln 2 − hi
  float p = 1.0f / 5040.0f;
  p = std::fma(p, r, 1.0f / 720.0f);
  p = std::fma(p, r, 1.0f / 120.0f);
  p = std::fma(p, r, 1.0f / 24.0f);
  p = std::fma(p, r, 1.0f / 6.0f);
  p = std::fma(p, r, 0.5f);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);  // e^r, in [0.70, 1.42]
  // n in [−150, 128]: each half in [−75, 64], a normal float's exponent.
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t n1 = ni >> 1, n2 = ni - n1;
  const float two_n1 = std::bit_cast<float>(static_cast<uint32_t>(n1 + 127) << 23);
  const float two_n2 = std::bit_cast<float>(static_cast<uint32_t>(n2 + 127) << 23);
  const float y = p * two_n1 * two_n2;  // p · 2^n1 is exact; the last multiply rounds once
  return std::isunordered(x, x) ? quiet : y;
}

// e^x for the row kernels, in their compute type: exp_f32 for float, std::exp for
// double (the f64 path is the one gradcheck runs; it stays the library's exp).
inline float exp_of(float x) { return exp_f32(x); }
inline double exp_of(double x) { return std::exp(x); }

}  // namespace minidl::cpu
