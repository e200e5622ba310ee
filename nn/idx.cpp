#include "nn/idx.h"

#include <zlib.h>

#include <filesystem>
#include <memory>

#include "core/check.h"

namespace minidl::nn {

std::vector<uint8_t> read_maybe_gzip(const std::string& path) {
  MINIDL_CHECK(std::filesystem::exists(path), "{}: no such file", path);
  std::unique_ptr<gzFile_s, int (*)(gzFile)> file(gzopen(path.c_str(), "rb"), gzclose);
  MINIDL_CHECK(file != nullptr, "{}: cannot open", path);
  std::vector<uint8_t> out;
  constexpr size_t kChunk = 1 << 20;
  for (;;) {
    size_t old = out.size();
    out.resize(old + kChunk);
    int n = gzread(file.get(), out.data() + old, kChunk);
    if (n < 0) {
      int code = 0;
      const char* msg = gzerror(file.get(), &code);
      fail("{}: corrupt gzip data after {} decompressed bytes: {}", path, old, msg ? msg : "unknown zlib error");
    }
    out.resize(old + static_cast<size_t>(n));
    if (n == 0) break;
  }
  // gzread reports a stream cut short as end of file; gzerror still knows.
  int code = 0;
  const char* msg = gzerror(file.get(), &code);
  MINIDL_CHECK(code == Z_OK || code == Z_STREAM_END, "{}: truncated or corrupt gzip after {} decompressed bytes: {}",
               path, out.size(), msg ? msg : "");
  return out;
}

IdxArray read_idx(const std::string& path, int expected_ndim) {
  std::vector<uint8_t> bytes = read_maybe_gzip(path);
  MINIDL_CHECK(bytes.size() >= 4, "{}: {} bytes is too short for an IDX header", path, bytes.size());
  MINIDL_CHECK(bytes[0] == 0 && bytes[1] == 0 && bytes[2] == 0x08 && bytes[3] == expected_ndim,
               "{}: wrong IDX magic {:02x} {:02x} {:02x} {:02x} (expected 00 00 08 {:02x}: unsigned bytes, {} dims)",
               path, bytes[0], bytes[1], bytes[2], bytes[3], expected_ndim, expected_ndim);
  const size_t header = 4 + 4 * static_cast<size_t>(expected_ndim);
  MINIDL_CHECK(bytes.size() >= header, "{}: file ends inside the header ({} of {} bytes)", path, bytes.size(), header);
  IdxArray out;
  uint64_t count = 1;
  for (int d = 0; d < expected_ndim; ++d) {
    const uint8_t* p = bytes.data() + 4 + 4 * d;
    uint64_t size = (uint64_t(p[0]) << 24) | (uint64_t(p[1]) << 16) | (uint64_t(p[2]) << 8) | p[3];
    out.dims.push_back(static_cast<int64_t>(size));
    count *= size;  // at most (2^32)^3 < 2^96: checked against the real size below before any use
    MINIDL_CHECK(count <= bytes.size(), "{}: dims {} need more bytes than the file holds ({})", path, out.dims,
                 bytes.size());
  }
  MINIDL_CHECK(bytes.size() - header == count,
               "{}: dims {} need {} bytes of data but the file has {} after the {}-byte header", path, out.dims, count,
               bytes.size() - header, header);
  out.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return out;
}

}  // namespace minidl::nn
