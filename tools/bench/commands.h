// tools/bench/commands.h — the `minidl bench ...` subcommands.
#pragma once

#include <string>
#include <vector>

namespace minidl::bench {

struct CommonOptions {
  bool json = false;
  bool markdown = false;
  double min_seconds = 0.5;
  int min_runs = 10;
  int warmup = 3;
};

// SGEMM at each "MxNxK" shape: minidl's packed kernel, its reference loop (with
// --reference) and OpenBLAS when the tool was built with it, interleaved.
int bench_gemm(const std::vector<std::string>& shapes, bool with_reference, const CommonOptions& o);

// One training step (forward, backward, AdamW) of a zoo model on fixed batches of
// Fashion-MNIST (the first `batches` of the training set, in order).
int bench_train_step(const std::string& model, int64_t batch, int64_t batches, const std::string& data_dir,
                     bool raw, const CommonOptions& o);

}  // namespace minidl::bench
