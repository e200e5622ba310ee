// tools/distill.h — `minidl distill`: train a student on a teacher's soft
// predictions, and show (with --baseline, over --seeds) whether it beats the same
// student trained alone.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn/data.h"

namespace minidl::tools {

struct DistillOptions {
  // Any checkpoint load_model reads (dense, pruned, shrunk); several: an ensemble, logits averaged.
  std::vector<std::string> teachers = {};
  std::string student = "mlp-small";  // a zoo name, or a checkpoint to start from (a pruned one keeps its masks)
  double temperature = 4.0;
  double alpha = 0.7;
  int64_t epochs = 5;
  int64_t batch = 32;
  double lr = 1e-3;  // AdamW with the trainer's cosine schedule and warm-up, as `minidl train`
  std::string schedule = "cosine";
  bool augment = false;   // random crop + flip: then the teacher runs on every batch
  bool no_cache = false;  // run the teacher on every batch anyway (to time what the cache saves)
  // Function matching on mixed images: the distilled student also matches the
  // teacher on each batch mixed with a shuffled copy of itself (x' = λx + (1−λ)x[π],
  // λ ~ U(0, 1) per image), a transfer set with no labels; the teacher runs on
  // it every batch. The student alone is unchanged.
  bool mixup = false;
  std::vector<uint64_t> seeds = {0};
  bool baseline = false;  // also train the student alone, same seed, epochs, schedule and data order
  bool sweep = false;     // T × α grid instead, first seed only
  std::vector<double> sweep_temperatures = {1, 2, 4, 8};
  std::vector<double> sweep_alphas = {0.5, 0.7, 0.9};
  std::string data_dir = nn::kFashionMnistDir;
  int64_t limit_train = 0, limit_test = 0;
  std::string out = {};  // the distilled student (first seed) is written here
  // Where teacher and student run: "cpu" or "cuda[:N]". On a GPU the cached
  // teacher logits stay there, and each batch's rows are gathered on it.
  std::string device = "cpu";
  bool json = false;
};

int run_distill(const DistillOptions& o);

}  // namespace minidl::tools
