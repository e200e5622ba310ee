// ops/cpu/tile_loop.h (internal) — the panel width and the tile loop the int8,
// bf16 and packed-f32 GEMMs share.
//
// Both keep C in tiles of up to `mr` rows × `nv` panels of 16 columns. The tiles
// are numbered panel-group-major and split into one contiguous range per
// thread, so each thread reads its own share of the packed weight once and all
// of x (small) as often as it needs.
#pragma once

#include <algorithm>
#include <cstdint>

#include "ops/cpu/loops.h"

namespace minidl::cpu {

// Columns per panel in the int8, bf16 and packed-f32 layouts: one zmm register
// of 32-bit lanes (int32 or f32 sums).
inline constexpr int64_t kPanel = 16;
inline int64_t panels_of(int64_t N) { return (N + kPanel - 1) / kPanel; }

struct NoThreadSetup {};

// Panels per tile for the 6-row kernels: 4, or at batch 1–2 (one row block, the
// weight streamed) up to 8 for more independent accumulator chains per row —
// but never so wide that the whole product is one or two tiles and a thread
// sits idle (a 128-column layer is 8 panels: 2 tiles of 4, not 1 of 8).
inline int64_t panels_per_tile(int64_t M, int64_t panels) {
  if (M > 2) return 4;
  return std::clamp<int64_t>(panels / 4, 1, 8);
}

// tile(rows, m0, p0, panels) for every tile of an (M, panels · 16) output; a
// second thread joins from `parallel_macs` multiply-adds (M·N·K). Each thread
// holds a ThreadSetup while it runs its tiles (the AMX kernels load their tile
// configuration that way).
template <class ThreadSetup = NoThreadSetup, class Tile>
void for_each_tile(int64_t M, int64_t panels, int64_t macs, int64_t parallel_macs, int64_t mr, int64_t nv,
                   Tile&& tile) {
  const int64_t row_blocks = (M + mr - 1) / mr, col_groups = (panels + nv - 1) / nv;
  const int64_t tiles = row_blocks * col_groups;
  auto run = [&](int64_t t0, int64_t t1) {
    [[maybe_unused]] ThreadSetup setup;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t g = t / row_blocks, r = t % row_blocks;
      const int64_t m0 = r * mr, p0 = g * nv;
      tile(std::min(mr, M - m0), m0, p0, std::min(nv, panels - p0));
    }
  };
  parallel_for(macs >= parallel_macs, tiles, run);
}

}  // namespace minidl::cpu
