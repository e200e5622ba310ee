// core/file.h — reading a whole file in one go, and writing one so that it is
// either all there or not there (and checking, before a long run, that it can be).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace minidl {

// The bytes of `path`, read with one system call per chunk rather than a stream
// iterator's call per byte: no faster in an optimised build (gunzip dominates),
// but under the sanitizers every one of those calls is instrumented, and the
// training images are 26 MB. Errors name the file and the reason: missing,
// unreadable, a directory, a read that fails.
std::vector<uint8_t> read_file(const std::string& path);

// Writes the chunks, in order, to a temporary file beside `path`, flushes it to
// disk and renames it over `path` (then flushes the directory), so a reader
// never sees half a file and a failure leaves the old one in place. Errors name
// `op` and the file.
void write_file_atomically(const std::string& path, const std::vector<std::pair<const void*, size_t>>& chunks,
                           const char* op);
inline void write_file_atomically(const std::string& path, const std::string& text, const char* op) {
  write_file_atomically(path, {{text.data(), text.size()}}, op);
}

// Readies `path` to be written at the end of a long run, or refuses it now
// rather than after the run: an existing directory is refused, and missing
// parent directories are created (a file in their way is refused). Errors name
// `op` and the path.
void prepare_output(const std::string& path, const char* op);

}  // namespace minidl
