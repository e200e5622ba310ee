// ops/cpu/amx.h (internal) — what the int8 and bf16 AMX kernels share.
//
// AMX adds eight tile registers, tmm0..tmm7, each up to 16 rows of 64 bytes, and
// one instruction that multiplies two tiles into a third: tdpbusd (u8 × s8 →
// int32, 16·16·64 multiply-adds) and tdpbf16ps (bf16 × bf16 → f32, 16·16·32).
// The shapes the tiles hold are set by a 64-byte configuration loaded into each
// thread before its first tile instruction (and released after, so the OS does
// not carry 8 KiB of tile state across context switches for a thread that is
// done with them).
//
// Both kernels use one configuration: every tile 16 rows × 64 bytes —
//   tmm0..tmm3  C, a 2 × 2 block of 16 × 16 int32 or f32 sums,
//   tmm4, tmm5  A, 16 rows of x each, 64 bytes of k (64 u8 or 32 bf16),
//   tmm6, tmm7  B, 16 rows of the packed weight: 16 groups of k (4 bytes or
//               2 bf16 per column) × 16 columns — exactly 16 consecutive
//               64-byte groups of one panel of the VNNI layout, so the weight
//               packed for the AVX-512 kernels is read by the tiles unchanged.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace minidl::cpu::amx {

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row, per tile
  uint8_t rows[16] = {};
};

// Every tile 16 rows × 64 bytes. A constant in memory, not a local: GCC 12 does
// not see that ldtilecfg reads its operand and drops the stores that fill a
// local one (the CPU then faults on the garbage).
inline constexpr TileConfig kConfig = [] {
  TileConfig c;
  for (int t = 0; t < 8; ++t) c.colsb[t] = 64, c.rows[t] = 16;
  return c;
}();

// Loads the configuration for this thread; releases the tiles on exit.
class Tiles {
 public:
  __attribute__((target("amx-tile"))) Tiles() { _tile_loadconfig(&kConfig); }
  __attribute__((target("amx-tile"))) ~Tiles() { _tile_release(); }
  Tiles(const Tiles&) = delete;
  Tiles& operator=(const Tiles&) = delete;
};

// The tiles' part of a GEMM block, for both kernels: sums (MT × NT tiles of
// 16 × 16 32-bit sums, C(i, j) at sums + (2i + j)·256) := the product of
// `chunks` chunks of 64 bytes of K — 64 u8 × s8 (tdpbusd) or 32 bf16 pairs
// (tdpbf16ps). In bytes the two layouts are one: row i of x at x + i·x_stride,
// chunk c at + 64c; panel j of the packed weight at w + j·panel_bytes, chunk c
// at + 1024c (16 groups of 64 bytes).
template <bool kBf16, int MT, int NT>
__attribute__((target("amx-tile,amx-int8,amx-bf16"))) inline void multiply_block(const uint8_t* x, int64_t x_stride,
                                                                                 const uint8_t* w, int64_t panel_bytes,
                                                                                 int64_t chunks, void* sums) {
  // Tile numbers are immediates pasted into the instruction: C(i, j) is
  // tmm(2i + j), A(i) tmm(4 + i), B(j) tmm(6 + j).
  _tile_zero(0);
  if constexpr (NT > 1) _tile_zero(1);
  if constexpr (MT > 1) _tile_zero(2);
  if constexpr (MT > 1 && NT > 1) _tile_zero(3);
  for (int64_t c = 0; c < chunks; ++c) {
    _tile_loadd(4, x + 64 * c, x_stride);
    _tile_loadd(6, w + 1024 * c, 64);
    if constexpr (MT > 1) _tile_loadd(5, x + 16 * x_stride + 64 * c, x_stride);
    if constexpr (NT > 1) _tile_loadd(7, w + panel_bytes + 1024 * c, 64);
    if constexpr (kBf16) {
      _tile_dpbf16ps(0, 4, 6);
      if constexpr (NT > 1) _tile_dpbf16ps(1, 4, 7);
      if constexpr (MT > 1) _tile_dpbf16ps(2, 5, 6);
      if constexpr (MT > 1 && NT > 1) _tile_dpbf16ps(3, 5, 7);
    } else {
      _tile_dpbusd(0, 4, 6);
      if constexpr (NT > 1) _tile_dpbusd(1, 4, 7);
      if constexpr (MT > 1) _tile_dpbusd(2, 5, 6);
      if constexpr (MT > 1 && NT > 1) _tile_dpbusd(3, 5, 7);
    }
  }
  auto* out = static_cast<uint8_t*>(sums);  // tilestored tells the compiler it writes memory
  _tile_stored(0, out, 64);
  if constexpr (NT > 1) _tile_stored(1, out + 1024, 64);
  if constexpr (MT > 1) _tile_stored(2, out + 2048, 64);
  if constexpr (MT > 1 && NT > 1) _tile_stored(3, out + 3072, 64);
}

}  // namespace minidl::cpu::amx
