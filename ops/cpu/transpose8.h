// ops/cpu/transpose8.h — transposing floats as 8×8 blocks in eight AVX2
// registers (the x86-64-v3 baseline): cpu::copy's blocked transpose (copy.cpp)
// and the int8 convolution's channels-last input and channels-first output
// (qconv.cpp).
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace minidl::cpu {

// v[k] (8 floats each) := the columns of the 8×8 block whose rows v held:
// pairs of rows interleaved (unpack), then pairs of pairs (shuffle), then the
// 128-bit halves exchanged (permute2f128).
inline void transpose8(__m256 (&v)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
  const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
  const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
  const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  v[0] = _mm256_permute2f128_ps(u0, u4, 0x20), v[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  v[2] = _mm256_permute2f128_ps(u2, u6, 0x20), v[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  v[4] = _mm256_permute2f128_ps(u0, u4, 0x31), v[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  v[6] = _mm256_permute2f128_ps(u2, u6, 0x31), v[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// d[i·ld_dst + j] := s[i + j·ld_src] for i < rows, j < cols: column j of d's
// rows is contiguous in s. Whole 8×8 blocks in registers, the ragged edges
// element by element. Serial: callers tile and thread it.
inline void transpose_block(float* d, int64_t ld_dst, const float* s, int64_t ld_src, int64_t rows, int64_t cols) {
  const int64_t i8 = rows / 8 * 8, j8 = cols / 8 * 8;
  for (int64_t i = 0; i < i8; i += 8)
    for (int64_t j = 0; j < j8; j += 8) {
      __m256 v[8];
      for (int k = 0; k < 8; ++k) v[k] = _mm256_loadu_ps(s + i + (j + k) * ld_src);
      transpose8(v);
      for (int k = 0; k < 8; ++k) _mm256_storeu_ps(d + (i + k) * ld_dst + j, v[k]);
    }
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = (i < i8 ? j8 : 0); j < cols; ++j) d[i * ld_dst + j] = s[i + j * ld_src];
}

}  // namespace minidl::cpu
