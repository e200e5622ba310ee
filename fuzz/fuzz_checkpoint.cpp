// fuzz/fuzz_checkpoint.cpp — libFuzzer entry point; the input handling is
// minidl::fuzz::checkpoint (fuzz/targets.h).
#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  minidl::fuzz::checkpoint(data, size);
  return 0;
}
