// nn/train.h — the training loop behind `minidl train` and `minidl eval`, and
// training checkpoints (model + its spec + optimizer + epoch + config, one
// safetensors file).
//
// The loop takes any model, any loss and hooks:
//
//   auto model = make<Sequential>(...);                       // built by hand, or build_model("cnn")
//   Trainer trainer(model, {.epochs = 3}, {
//       .loss = [](const Tensor& logits, const Batch& b) { return cross_entropy(logits, b.labels); },
//       .after_step = [&](Trainer& t, int64_t step) { masks.apply(t.model()); },   // pruning
//       .after_epoch = [&](Trainer& t, const EpochResult& r) { log(r); }});
//
// Pruning re-applies its masks after each step, distillation computes the
// teacher's logits inside the loss, quantization evaluates in after_epoch.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/data.h"
#include "nn/models.h"
#include "nn/optim.h"
#include "nn/safetensors.h"

namespace minidl::nn {

struct TrainConfig {
  std::string model = "cnn";      // a zoo name for build_model(config); "custom" for a model built by hand
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
  std::string device = "cpu";     // the Trainer moves the model and each batch here

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

// Accuracy, loss, per-class accuracy and confusion on `data`, with the batches
// moved to the device the model's parameters are on.
EvalResult evaluate(Module& model, const ImageDataset& data, int64_t batch_size = 256);

// One image of `data` through `model` (eval mode, no grad, on the device its
// parameters are on): the number of classes it predicts. A model that does not
// take the data's images, or gives no (1, classes) logits, is an Error that
// starts with `who` and names the image size — asked before any long work.
int64_t classes_of(Module& model, const ImageDataset& data, const std::string& who);

class Trainer;

// Tensors of a checkpoint that are not the model's: the optimizer's state
// ("optimizer.exp_avg.1.weight") and what compressions keep beside the model
// ("pruning.mask.1.weight"). load_model and resume leave the others alone.
inline constexpr const char* kCheckpointSections[] = {"optimizer.", "pruning."};
bool is_section_tensor(const std::string& name);

// The loss of a batch from the model's logits; the default is cross-entropy on
// the batch's labels with config.label_smoothing.
using LossFn = std::function<Tensor(const Tensor& logits, const Batch& batch)>;
struct TrainHooks {
  LossFn loss = nullptr;
  // After every optimizer step; `step` counts steps over all epochs, from 1.
  std::function<void(Trainer&, int64_t step)> after_step = nullptr;
  // After every epoch, once the test set is evaluated.
  std::function<void(Trainer&, const EpochResult&)> after_epoch = nullptr;
};

// The zoo model named by config.model, initialised from config.seed: what
// `minidl train` trains.
std::shared_ptr<Sequential> build_model(const TrainConfig& config);

// A model, its optimizer and schedule, and the loop over epochs.
class Trainer {
 public:
  Trainer(ModulePtr model, TrainConfig config, TrainHooks hooks = {});
  // Restores model, optimizer, epoch and history from a checkpoint written by save().
  void resume(const std::string& checkpoint_path);
  // The same from a file already read (`name` stands for it in errors).
  void resume(SafeTensors checkpoint, const std::string& name);
  // Trains one epoch (the next one) on `train`, then evaluates on `test`.
  // A NaN or Inf loss throws before the parameters are updated with it.
  EpochResult run_epoch(const ImageDataset& train, const ImageDataset& test, const ProgressFn& progress = {});
  // extra_tensors go in a checkpoint section (names starting "pruning." ...:
  // kCheckpointSections), extra_metadata beside the checkpoint's own keys.
  void save(const std::string& path, const StateDict& extra_tensors = {}, const Metadata& extra_metadata = {}) const;

  const TrainConfig& config() const { return config_; }
  int64_t epochs_done() const { return epoch_; }
  Module& model() { return *model_; }
  const ModulePtr& model_ptr() const { return model_; }
  Optimizer& optimizer() { return *optimizer_; }
  const std::vector<EpochResult>& history() const { return history_; }

 private:
  double lr_for_step(int64_t step, int64_t steps_per_epoch) const;
  TrainConfig config_;
  TrainHooks hooks_;
  ModulePtr model_;
  std::unique_ptr<Optimizer> optimizer_;
  int64_t epoch_ = 0;
  std::vector<EpochResult> history_;
};

// Loads a checkpoint's model for evaluation: rebuilt from the model spec in its
// metadata (nn/spec.h), or, for older checkpoints without one, the zoo
// architecture named by "arch"; strict about tensor names, shapes and dtypes.
// `description` (optional) receives the zoo name, or "custom" for a spec'd model
// that is not a zoo one.
ModulePtr load_model(const std::string& checkpoint_path, std::string* description = nullptr);
// The same from a file already read (`name` stands for it in errors).
ModulePtr load_model(SafeTensors checkpoint, const std::string& name, std::string* description = nullptr);

// Writes a model alone, without optimizer state (atomically): its tensors, its
// spec and `extra_metadata`. load_model and `minidl eval` read it back; what
// `minidl quantize` writes.
void save_model(const std::string& path, const Module& model, const Metadata& extra_metadata = {});

nlohmann::json to_json(const EvalResult& r);
nlohmann::json to_json(const EpochResult& r);

}  // namespace minidl::nn
