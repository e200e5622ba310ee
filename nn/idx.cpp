#include "nn/idx.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <memory>

#include "core/check.h"
#include "core/file.h"

namespace minidl::nn {

std::vector<uint8_t> read_maybe_gzip(const std::string& path) {
  const std::vector<uint8_t> raw = read_file(path);
  return gunzip_maybe(raw.data(), raw.size(), path);
}

std::vector<uint8_t> gunzip_maybe(const uint8_t* data, size_t size, const std::string& path, size_t max_bytes) {
  const bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  if (!gzip) {
    MINIDL_CHECK(size <= max_bytes, "{}: {} bytes is more than the {} allowed", path, size, max_bytes);
    return {data, data + size};
  }
  z_stream zs{};
  MINIDL_CHECK(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK, "{}: cannot start zlib", path);
  std::unique_ptr<z_stream, int (*)(z_streamp)> guard(&zs, inflateEnd);
  std::vector<uint8_t> out;
  zs.next_in = const_cast<Bytef*>(data);
  zs.avail_in = static_cast<uInt>(std::min<size_t>(size, UINT32_MAX));
  constexpr size_t kChunk = 1 << 20;
  int rc = Z_OK;
  // Several gzip members may follow each other (gzip's own concatenation rule).
  while (true) {
    const size_t old = out.size();
    MINIDL_CHECK(old < max_bytes, "{}: decompresses to more than {} bytes; refusing (a corrupt or hostile file?)", path,
                 max_bytes);
    out.resize(old + kChunk);
    zs.next_out = out.data() + old;
    zs.avail_out = static_cast<uInt>(kChunk);
    rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(old + (kChunk - zs.avail_out));
    if (rc == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      MINIDL_CHECK(inflateReset(&zs) == Z_OK, "{}: cannot restart zlib", path);
      continue;
    }
    if (rc == Z_OK) {
      if (zs.avail_in == 0 && zs.avail_out != 0)
        fail("{}: truncated gzip after {} decompressed bytes (input ends inside the stream)", path, out.size());
      continue;
    }
    if (rc == Z_BUF_ERROR && zs.avail_in == 0)
      fail("{}: truncated gzip after {} decompressed bytes (input ends inside the stream)", path, out.size());
    fail("{}: corrupt gzip data after {} decompressed bytes (byte {} of the file): {}", path, out.size(),
         static_cast<size_t>(zs.next_in - data), zs.msg ? zs.msg : "unknown zlib error");
  }
  return out;
}

IdxArray read_idx(const std::string& path, int expected_ndim) {
  return parse_idx(read_maybe_gzip(path), expected_ndim, path);
}

IdxArray parse_idx(const std::vector<uint8_t>& bytes, int expected_ndim, const std::string& path) {
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
