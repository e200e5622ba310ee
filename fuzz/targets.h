// fuzz/targets.h — what each fuzz target feeds its parser, shared by the libFuzzer
// entry points (fuzz/fuzz_*.cpp) and the regression test (tests/test_fuzz_inputs.cpp).
//
// A parser's promise: any input either parses or throws minidl::Error naming the
// file and what is wrong. Anything else — another exception escaping, a crash, a
// sanitizer report, a leak, a timeout, memory beyond the fuzzer's limit — is a
// finding: fix it, and keep the input under fuzz/regressions/<target>/.
#pragma once

#include <cstddef>
#include <cstdint>

#include "compress/prune.h"
#include "compress/quantize.h"
#include "core/autograd.h"
#include "core/error.h"
#include "nn/idx.h"
#include "nn/safetensors.h"
#include "nn/train.h"
#include "ops/factory.h"

namespace minidl::fuzz {

// Bytes as a safetensors file.
inline void safetensors(const uint8_t* data, size_t size) {
  try {
    nn::parse_safetensors(reinterpret_cast<const char*>(data), size, "fuzz.safetensors");
  } catch (const Error&) {
  }
}

// The first byte picks labels (1-D) or images (3-D); the rest is the file, gzip'd or not.
inline void idx(const uint8_t* data, size_t size) {
  if (size < 1) return;
  const int ndim = data[0] & 1 ? 3 : 1;
  try {
    nn::parse_idx(nn::gunzip_maybe(data + 1, size - 1, "fuzz.idx", size_t{64} << 20), ndim, "fuzz.idx");
  } catch (const Error&) {
  }
}

// Bytes as a checkpoint: the model rebuilt from its spec and loaded, its pruning
// masks and recipe restored, then a Trainer resumed from the same file
// (optimizer state, epoch, history).
inline void checkpoint(const uint8_t* data, size_t size) {
  try {
    nn::SafeTensors file = nn::parse_safetensors(reinterpret_cast<const char*>(data), size, "fuzz.safetensors");
    nn::ModulePtr model = nn::load_model(file, "fuzz.safetensors");
    if (compress::is_quantized(*model)) {
      // An int8 model runs: its packed weights and scales passed load's checks.
      NoGradGuard no_grad;
      model->eval();
      Generator gen(0);
      model->forward(randn({1, 1, 4, 4}, {}, gen));
    }
    compress::Pruner(*model).load_from(file, "fuzz.safetensors");
    nn::TrainConfig config;
    config.model = "custom";
    nn::Trainer trainer(model, config);
    trainer.resume(file, "fuzz.safetensors");
  } catch (const Error&) {
  }
}

}  // namespace minidl::fuzz
