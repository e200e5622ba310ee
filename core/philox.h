// core/philox.h — Philox4x32-10, the counter-based random generator behind dropout.
//
// A sequential generator (core/generator.h) hands out numbers one after the
// other, so element i's number depends on every draw before it: a GPU cannot
// give each of a million threads its own without a million states. A
// counter-based generator is a pure function instead — random(key, counter) —
// so thread i computes element i's number from i alone, in any order, on any
// device, and the CPU computes the very same numbers (dropout's mask is
// identical on both, which the parity tests check bit for bit).
//
// Philox (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as
// 1, 2, 3", SC 2011) is the one cuRAND and PyTorch use: ten rounds of a small
// Feistel-like network over four 32-bit words, each round two 32×32→64-bit
// multiplications whose high halves are XORed into the other words, with the
// key bumped by two Weyl constants between rounds. Plain integer arithmetic,
// MINIDL_HOST_DEVICE: the same code runs in host loops and CUDA kernels.
#pragma once

#include <array>
#include <cstdint>

#include "core/dtype.h"  // MINIDL_HOST_DEVICE

namespace minidl {

struct Philox4x32 {
  uint32_t v[4];
};

// The four 32-bit outputs for counter (c0, c1, c2, c3) under key (k0, k1).
MINIDL_HOST_DEVICE inline Philox4x32 philox4x32_10(Philox4x32 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;  // the round multipliers
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;  // the key schedule: golden ratio, √3 − 1
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * c.v[0];
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * c.v[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return c;
}

// Dropout's draw for element i: 24 random bits from counter i under a 64-bit
// key (one key per dropout call, taken from the caller's Generator). An element
// is kept when its bits are at least keep_threshold(p): an integer comparison,
// so the CPU and the GPU agree exactly, with P(keep) = 1 − ⌈p·2²⁴⌉ / 2²⁴.
MINIDL_HOST_DEVICE inline uint32_t dropout_bits(uint64_t key, uint64_t i) {
  const Philox4x32 c{{static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32), 0, 0}};
  return philox4x32_10(c, static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32)).v[0] >> 8;
}
inline uint32_t dropout_keep_threshold(double p) {
  const double scaled = p * 16777216.0;  // 2^24
  const auto t = static_cast<uint32_t>(scaled);
  return t + (static_cast<double>(t) < scaled ? 1u : 0u);  // ⌈p·2²⁴⌉ for p in [0, 1]
}

}  // namespace minidl
