// nn/safetensors.h — reading and writing the safetensors format.
//
// The format (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N; N bytes of JSON mapping each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets into the data that
// follows), plus an optional "__metadata__" object of string values; then the
// raw little-endian tensor bytes, which the offsets must cover with no holes.
// Python's `safetensors` and PyTorch read these files, and minidl reads theirs.
#pragma once

#include <map>
#include <string>

#include "nn/module.h"

namespace minidl::nn {

using Metadata = std::map<std::string, std::string>;

struct SafeTensors {
  StateDict tensors;
  Metadata metadata;
};

// Writes atomically: to a temporary file beside `path`, flushed to disk, then
// renamed over `path`. A crash or a full disk never leaves a half-written file
// under the final name; the previous file stays intact until the rename.
void save_safetensors(const std::string& path, const StateDict& tensors, const Metadata& metadata = {});

// Reads and validates every field; errors name the file, the tensor and the byte offset.
SafeTensors load_safetensors(const std::string& path);
// The same from bytes in memory; `name` stands for the file in error messages.
SafeTensors parse_safetensors(const char* data, size_t size, const std::string& name);

}  // namespace minidl::nn
