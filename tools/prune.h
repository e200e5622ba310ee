// tools/prune.h — `minidl prune`: prune a checkpoint, fine-tune it, and measure
// whether the result is actually faster.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn/data.h"
#include "tools/bench/commands.h"

namespace minidl::tools {

struct PruneOptions {
  std::string checkpoint, out;
  std::string method = "global";    // l1 | random | global | channel
  double amount = 0.9;              // fraction of the weights (channel: of each layer's outputs)
  std::string criterion = "l1";     // channel ranking: l1 | l2 | random
  std::string schedule = "oneshot";  // oneshot | agp
  std::vector<std::string> layers;  // default: every Linear/Conv2d (channel: all but the classifier)
  int64_t finetune_epochs = 0;
  double lr = 5e-4;
  int64_t batch = 32;
  uint64_t seed = 0;
  std::string data_dir = nn::kFashionMnistDir;
  int64_t limit_train = 0, limit_test = 0;
  std::vector<int64_t> latency_batches = {1, 128};
  std::string bsr = "bsr4x4";
  // Convert each layer to CSR/BSR only where a quick measurement on its real
  // input (at the largest latency batch) says sparse is faster.
  bool auto_select = false;
  bench::CommonOptions timing;      // rounds and minimum time of the latency comparison
  // Sensitivity analysis instead: each layer alone pruned (L1) to each sparsity
  // of the grid, the test accuracy of each; --out then names the JSON to write.
  bool sensitivity = false;
  std::vector<double> grid = {0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98};
};

int run_prune(const PruneOptions& o);

}  // namespace minidl::tools
