// fuzz/fuzz_text.cpp — libFuzzer entry point; the input handling is
// minidl::fuzz::text (fuzz/targets.h).
#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  minidl::fuzz::text(data, size);
  return 0;
}
