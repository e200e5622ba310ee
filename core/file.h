// core/file.h — writing a file so that it is either all there or not there.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace minidl {

// Writes the chunks, in order, to a temporary file beside `path`, flushes it to
// disk and renames it over `path` (then flushes the directory), so a reader
// never sees half a file and a failure leaves the old one in place. Errors name
// `op` and the file.
void write_file_atomically(const std::string& path, const std::vector<std::pair<const void*, size_t>>& chunks,
                           const char* op);
inline void write_file_atomically(const std::string& path, const std::string& text, const char* op) {
  write_file_atomically(path, {{text.data(), text.size()}}, op);
}

}  // namespace minidl
