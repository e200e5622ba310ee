// fuzz/fuzz_idx.cpp — libFuzzer entry point; the input handling is
// minidl::fuzz::idx (fuzz/targets.h).
#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  minidl::fuzz::idx(data, size);
  return 0;
}
