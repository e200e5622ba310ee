// nn/idx.h — reading MNIST-format IDX files, gzip-compressed or not.
//
// Layout (big-endian): magic = 0x00 0x00 type ndim, then ndim u32 sizes, then the
// data. minidl reads unsigned-byte files (type 0x08): images (ndim 3) and labels
// (ndim 1). Nothing is allocated from an unchecked header field: the file is
// decompressed first (its real size bounds every buffer), then the header is
// checked against what is actually there.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace minidl::nn {

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // row-major, dims' product bytes
};

// Reads the whole file; throws minidl::Error naming the file and what is wrong
// (missing, corrupt or truncated gzip, wrong magic, sizes that disagree with the data).
IdxArray read_idx(const std::string& path, int expected_ndim);

// Decompresses a gzip file (or returns a plain file as is). Throws naming the file.
std::vector<uint8_t> read_maybe_gzip(const std::string& path);

// The same two steps on bytes in memory (the fuzz targets call these); `name`
// stands for the file in error messages. Decompression stops with an error past
// `max_bytes` of output, so a small corrupt file cannot ask for gigabytes.
inline constexpr size_t kMaxIdxBytes = size_t{1} << 30;
std::vector<uint8_t> gunzip_maybe(const uint8_t* data, size_t size, const std::string& name,
                                  size_t max_bytes = kMaxIdxBytes);
IdxArray parse_idx(const std::vector<uint8_t>& bytes, int expected_ndim, const std::string& name);

}  // namespace minidl::nn
