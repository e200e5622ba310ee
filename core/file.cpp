#include "core/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/check.h"

namespace minidl {

namespace {
// Writes all of buf to fd, or throws naming the file (e.g. "No space left on device").
void write_all(int fd, const void* buf, size_t n, const std::string& path, const char* op) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    MINIDL_CHECK(w > 0, "{}: writing {} failed: {}", op, path, std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}
}  // namespace

std::vector<uint8_t> read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  MINIDL_CHECK(fd >= 0, "{}: no such file or cannot open it ({})", path, std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  // The size fstat gives, plus one byte so that the read that finds the end has
  // room; a file that grows meanwhile, or a pipe (size 0), grows the buffer.
  struct stat st {};
  const size_t expected = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? static_cast<size_t>(st.st_size) : 0;
  std::vector<uint8_t> bytes(expected + 1);
  size_t have = 0;
  for (;;) {
    if (have == bytes.size()) bytes.resize(std::max<size_t>(2 * bytes.size(), 1 << 16));
    const ssize_t r = ::read(fd, bytes.data() + have, bytes.size() - have);
    if (r < 0 && errno == EINTR) continue;
    MINIDL_CHECK(r >= 0, "{}: reading failed after {} bytes: {}", path, have, std::strerror(errno));
    if (r == 0) break;
    have += static_cast<size_t>(r);
  }
  bytes.resize(have);
  return bytes;
}

void write_file_atomically(const std::string& path, const std::vector<std::pair<const void*, size_t>>& chunks,
                           const char* op) {
  // A temporary file in the same directory (so the rename is atomic), then fsync,
  // rename, and fsync the directory.
  std::filesystem::path final_path(path);
  std::filesystem::path dir = final_path.has_parent_path() ? final_path.parent_path() : std::filesystem::path(".");
  std::string tmp = (dir / fmt::format(".{}.tmp.{}", final_path.filename().string(), ::getpid())).string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  MINIDL_CHECK(fd >= 0, "{}: cannot create {}: {}", op, tmp, std::strerror(errno));
  try {
    for (const auto& [data, size] : chunks) write_all(fd, data, size, tmp, op);
    MINIDL_CHECK(::fsync(fd) == 0, "{}: flushing {} failed: {}", op, tmp, std::strerror(errno));
  } catch (...) {
    ::close(fd);
    std::filesystem::remove(tmp);
    throw;
  }
  MINIDL_CHECK(::close(fd) == 0, "{}: closing {} failed: {}", op, tmp, std::strerror(errno));
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string why = std::strerror(errno);
    std::filesystem::remove(tmp);
    fail("{}: renaming {} to {} failed: {}", op, tmp, path, why);
  }
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);  // make the rename itself durable
    ::close(dfd);
  }
}

void prepare_output(const std::string& path, const char* op) {
  namespace fs = std::filesystem;
  std::error_code ec;
  MINIDL_CHECK(!path.empty(), "{}: the output path is empty", op);
  MINIDL_CHECK(!fs::is_directory(path, ec), "{}: {} is a directory; give the path of the file to write", op, path);
  const fs::path parent = fs::path(path).parent_path();
  if (parent.empty()) return;
  fs::create_directories(parent, ec);
  MINIDL_CHECK(!ec && fs::is_directory(parent, ec), "{}: cannot make the directory {} for {}: {}", op, parent.string(),
               path, ec ? ec.message() : "a file of that name is in the way");
}

}  // namespace minidl
