// fuzz/fuzz_safetensors.cpp — libFuzzer entry point; the input handling is
// minidl::fuzz::safetensors (fuzz/targets.h).
#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  minidl::fuzz::safetensors(data, size);
  return 0;
}
