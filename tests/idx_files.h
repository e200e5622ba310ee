// tests/idx_files.h — small MNIST-format (IDX, gzipped) files for tests: the
// data reader's, and commands that must refuse data of the wrong shape.
#pragma once

#include <doctest/doctest.h>
#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

#include "temp_dir.h"

namespace minidl::testing {

inline std::vector<uint8_t> idx_bytes(std::vector<uint32_t> dims, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> b = {0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) b.insert(b.end(), {uint8_t(d >> 24), uint8_t(d >> 16), uint8_t(d >> 8), uint8_t(d)});
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

inline void write_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  gzclose(f);
}

// n images of side×side whose pixels encode their index, labels i % 10.
inline void write_dataset(const TempDir& dir, const std::string& split, int n, int side = 4) {
  std::vector<uint8_t> pixels, labels;
  for (int i = 0; i < n; ++i) {
    for (int p = 0; p < side * side; ++p) pixels.push_back(static_cast<uint8_t>((i * side * side + p) % 251));
    labels.push_back(static_cast<uint8_t>(i % 10));
  }
  write_gz(dir / (split + "-images-idx3-ubyte.gz"), idx_bytes({uint32_t(n), uint32_t(side), uint32_t(side)}, pixels));
  write_gz(dir / (split + "-labels-idx1-ubyte.gz"), idx_bytes({uint32_t(n)}, labels));
}

}  // namespace minidl::testing
