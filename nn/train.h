// nn/train.h — the training loop behind `minidl train` and `minidl eval`, and
// training checkpoints (model + optimizer + epoch + config, one safetensors file).
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/data.h"
#include "nn/models.h"
#include "nn/optim.h"

namespace minidl::nn {

struct TrainConfig {
  std::string model = "cnn";
  int64_t epochs = 3;
  int64_t batch = 32;             // best 3-epoch accuracy on Fashion-MNIST for mlp and cnn (docs/benchmarks.md)
  std::string opt = "adamw";      // sgd | adam | adamw
  double lr = 1e-3;
  double momentum = 0.9;          // sgd
  double weight_decay = -1;       // -1: the optimizer's default (0.01 for adamw, 0 otherwise)
  std::string schedule = "cosine";  // cosine (with warm-up) | step | none
  double warmup_epochs = 0.2;
  double label_smoothing = 0;
  double clip_grad_norm = 0;      // 0: off
  bool augment = false;           // random crop (pad 2) + horizontal flip
  uint64_t seed = 0;
  int64_t limit_train = 0;        // 0: the whole training set
  int64_t limit_test = 0;
  std::string data_dir = kFashionMnistDir;

  nlohmann::json to_json() const;
  static TrainConfig from_json(const nlohmann::json& j);
};

struct EvalResult {
  double loss = 0, accuracy = 0, seconds = 0;
  int64_t samples = 0;
  std::vector<double> per_class_accuracy;            // 10
  std::vector<std::vector<int64_t>> confusion;       // [true][predicted]
};

struct EpochResult {
  int64_t epoch = 0;
  double train_loss = 0, train_accuracy = 0, seconds = 0, samples_per_second = 0, lr = 0;
  EvalResult test;
};

// Called after each batch with (epoch, batch index, batches per epoch, running loss,
// running accuracy, samples per second): the progress bar.
using ProgressFn = std::function<void(int64_t, int64_t, int64_t, double, double, double)>;

EvalResult evaluate(Module& model, const ImageDataset& data, int64_t batch_size = 256);

// A model, its optimizer and schedule, and the loop over epochs.
class Trainer {
 public:
  explicit Trainer(TrainConfig config);
  // Restores model, optimizer, epoch and history from a checkpoint written by save().
  void resume(const std::string& checkpoint_path);
  // Trains one epoch (the next one) on `train`, then evaluates on `test`.
  // A NaN or Inf loss throws before the parameters are updated with it.
  EpochResult run_epoch(const ImageDataset& train, const ImageDataset& test, const ProgressFn& progress = {});
  void save(const std::string& path) const;

  const TrainConfig& config() const { return config_; }
  int64_t epochs_done() const { return epoch_; }
  Sequential& model() { return *model_; }
  const std::vector<EpochResult>& history() const { return history_; }

 private:
  double lr_for_step(int64_t step, int64_t steps_per_epoch) const;
  TrainConfig config_;
  std::shared_ptr<Sequential> model_;
  std::unique_ptr<Optimizer> optimizer_;
  int64_t epoch_ = 0;
  std::vector<EpochResult> history_;
};

// Loads a checkpoint's model for evaluation: the architecture named in its
// metadata, strict about tensor names, shapes and dtypes.
std::shared_ptr<Sequential> load_model(const std::string& checkpoint_path, std::string* arch = nullptr);

nlohmann::json to_json(const EvalResult& r);
nlohmann::json to_json(const EpochResult& r);

}  // namespace minidl::nn
