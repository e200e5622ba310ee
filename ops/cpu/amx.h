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

}  // namespace minidl::cpu::amx
