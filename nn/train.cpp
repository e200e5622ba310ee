#include "nn/train.h"

#include <chrono>
#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "core/parse.h"
#include "nn/safetensors.h"
#include "nn/spec.h"
#include "ops/elementwise.h"
#include "ops/loss.h"
#include "ops/reduce.h"

namespace minidl::nn {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
constexpr const char* kOptimizerPrefix = "optimizer.";
constexpr const char* kFormat = "minidl-checkpoint-v1";
}  // namespace

bool is_section_tensor(const std::string& name) {
  for (const char* section : kCheckpointSections)
    if (name.rfind(section, 0) == 0) return true;
  return false;
}

// ---------------------------------------------------------------- config

nlohmann::json TrainConfig::to_json() const {
  return {{"model", model},         {"epochs", epochs},
          {"batch", batch},         {"opt", opt},
          {"lr", lr},               {"momentum", momentum},
          {"weight_decay", weight_decay}, {"schedule", schedule},
          {"warmup_epochs", warmup_epochs}, {"label_smoothing", label_smoothing},
          {"clip_grad_norm", clip_grad_norm}, {"augment", augment},
          {"seed", seed},           {"limit_train", limit_train},
          {"limit_test", limit_test}, {"data_dir", data_dir}, {"device", device}};
}

TrainConfig TrainConfig::from_json(const nlohmann::json& j) {
  TrainConfig c;
  auto get = [&](const char* key, auto& field) {
    if (j.contains(key)) field = j.at(key).get<std::decay_t<decltype(field)>>();
  };
  get("model", c.model), get("epochs", c.epochs), get("batch", c.batch), get("opt", c.opt), get("lr", c.lr);
  get("momentum", c.momentum), get("weight_decay", c.weight_decay), get("schedule", c.schedule);
  get("warmup_epochs", c.warmup_epochs), get("label_smoothing", c.label_smoothing);
  get("clip_grad_norm", c.clip_grad_norm), get("augment", c.augment), get("seed", c.seed);
  get("limit_train", c.limit_train), get("limit_test", c.limit_test), get("data_dir", c.data_dir);
  get("device", c.device);
  return c;
}

// ---------------------------------------------------------------- evaluation

namespace {
// Where a model's parameters live (the CPU for a model without any).
Device model_device(const Module& model) {
  auto params = model.named_parameters();
  return params.empty() ? kCPU : params.front().second.device();
}

// The logits of a batch of n images must be (n, kClasses): a model with more
// outputs would predict classes the confusion matrix has no room for, and one
// with fewer could not score labels up to 9.
void check_logits(const Tensor& logits, int64_t n, const char* who) {
  MINIDL_CHECK(logits.dim() == 2 && logits.size(0) == n && logits.size(1) == kClasses,
               "{}: the model gives {} logits per image, but the data has {} classes (labels 0-{}): its output must "
               "be (batch, {}), not {} for a batch of {}",
               who, logits.dim() >= 1 ? logits.size(logits.dim() - 1) : 1, kClasses, kClasses - 1, kClasses,
               logits.shape(), n);
}
}  // namespace

EvalResult evaluate(Module& model, const ImageDataset& data, int64_t batch_size) {
  // No images, no accuracy: 0% (or 100%) would be a number made up.
  MINIDL_CHECK(data.size > 0, "evaluate: the data set holds no images");
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  auto start = Clock::now();
  EvalResult r;
  r.confusion.assign(kClasses, std::vector<int64_t>(kClasses, 0));
  DataLoader loader(data, {.batch_size = batch_size, .shuffle = false});
  loader.start_epoch(0);
  double loss_sum = 0;
  const Device device = model_device(model);
  while (auto batch = loader.next()) {
    Tensor logits = model(batch->images.to(device));
    check_logits(logits, batch->labels.numel(), "evaluate");
    loss_sum += cross_entropy(logits, batch->labels.to(device), {.reduction = Reduction::sum}).item();
    std::vector<int64_t> pred = argmax(logits, 1).to_vector<int64_t>();
    std::vector<int64_t> truth = batch->labels.to_vector<int64_t>();
    for (size_t i = 0; i < pred.size(); ++i) ++r.confusion[truth[i]][pred[i]];
    r.samples += static_cast<int64_t>(pred.size());
  }
  int64_t correct = 0;
  for (int64_t c = 0; c < kClasses; ++c) {
    int64_t total = 0;
    for (int64_t p = 0; p < kClasses; ++p) total += r.confusion[c][p];
    correct += r.confusion[c][c];
    r.per_class_accuracy.push_back(total ? static_cast<double>(r.confusion[c][c]) / total : 0.0);
  }
  r.loss = r.samples ? loss_sum / r.samples : 0;
  r.accuracy = r.samples ? static_cast<double>(correct) / r.samples : 0;
  r.seconds = seconds_since(start);
  model.train(was_training);
  return r;
}

int64_t classes_of(Module& model, const ImageDataset& data, const std::string& who) {
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const ImageDataset one = data.subset(1);  // the loader keeps a reference
  DataLoader loader(one, {.batch_size = 1, .shuffle = false});
  loader.start_epoch(0);
  const auto batch = loader.next();
  MINIDL_CHECK(batch.has_value(), "{}: the data set holds no images", who);
  Tensor out;
  try {
    out = model(batch->images.to(model_device(model)));
  } catch (const Error& e) {
    model.train(was_training);
    fail("{} does not take this data's {}x{} images: {}", who, data.rows, data.cols, e.what());
  }
  model.train(was_training);
  MINIDL_CHECK(out.dim() == 2 && out.size(0) == 1, "{} gives logits {} for one image, not (1, classes)", who,
               out.shape());
  return out.size(1);
}

// ---------------------------------------------------------------- trainer

std::shared_ptr<Sequential> build_model(const TrainConfig& config) {
  Generator gen(config.seed);
  return build_model(config.model, gen);
}

Trainer::Trainer(ModulePtr model, TrainConfig config, TrainHooks hooks)
    : config_(std::move(config)), hooks_(std::move(hooks)), model_(std::move(model)) {
  const TrainConfig& c = config_;
  MINIDL_CHECK(model_ != nullptr, "train: the model is null");
  MINIDL_CHECK(c.epochs > 0 && c.batch > 0 && c.lr > 0, "train: epochs ({}), batch ({}) and lr ({}) must be positive",
               c.epochs, c.batch, c.lr);
  if (!hooks_.loss) {
    const double smoothing = c.label_smoothing;
    hooks_.loss = [smoothing](const Tensor& logits, const Batch& b) {
      return cross_entropy(logits, b.labels, {.label_smoothing = smoothing});
    };
  }
  if (model_device(*model_) != Device(c.device)) model_->to(Device(c.device));
  NamedTensors params = model_->named_parameters();
  if (c.opt == "sgd") {
    optimizer_ = std::make_unique<SGD>(params, SGDOptions{.lr = c.lr, .momentum = c.momentum,
                                                          .weight_decay = std::max(c.weight_decay, 0.0)});
  } else if (c.opt == "adam") {
    optimizer_ = std::make_unique<Adam>(params, AdamOptions{.lr = c.lr, .weight_decay = std::max(c.weight_decay, 0.0)});
  } else if (c.opt == "adamw") {
    optimizer_ = std::make_unique<AdamW>(params,
                                         AdamOptions{.lr = c.lr, .weight_decay = c.weight_decay < 0 ? 0.01 : c.weight_decay});
  } else {
    fail("train: unknown optimizer '{}' (known: sgd, adam, adamw)", c.opt);
  }
  MINIDL_CHECK(c.schedule == "cosine" || c.schedule == "step" || c.schedule == "none",
               "train: unknown schedule '{}' (known: cosine, step, none)", c.schedule);
}

double Trainer::lr_for_step(int64_t step, int64_t steps_per_epoch) const {
  const TrainConfig& c = config_;
  if (c.schedule == "cosine") {
    auto warmup = static_cast<int64_t>(c.warmup_epochs * static_cast<double>(steps_per_epoch));
    return CosineWithWarmup(c.lr, warmup, c.epochs * steps_per_epoch).lr_at(step);
  }
  if (c.schedule == "step") return StepLR(c.lr, std::max<int64_t>(1, c.epochs / 3) * steps_per_epoch, 0.1).lr_at(step);
  return c.lr;
}

EpochResult Trainer::run_epoch(const ImageDataset& train, const ImageDataset& test, const ProgressFn& progress) {
  const TrainConfig& c = config_;
  MINIDL_CHECK(train.size > 0, "train: the training set holds no images");
  MINIDL_CHECK(test.size > 0, "train: the test set holds no images (the epoch ends by evaluating on it)");
  LoaderOptions lo{.batch_size = c.batch, .shuffle = true, .seed = c.seed};
  if (c.augment) lo.crop_padding = 2, lo.hflip = true;
  DataLoader loader(train, lo);
  loader.start_epoch(epoch_);
  model_->train();
  const Device device = model_device(*model_);
  const int64_t steps = loader.batches_per_epoch();
  auto start = Clock::now();
  double loss_sum = 0;
  int64_t correct = 0, seen = 0, b = 0;
  EpochResult r;
  r.epoch = epoch_ + 1;
  while (auto next = loader.next()) {
    const Batch batch{next->images.to(device), next->labels.to(device), next->indices.to(device)};
    const double lr = lr_for_step(epoch_ * steps + b, steps);
    optimizer_->set_lr(lr);
    Tensor logits = (*model_)(batch.images);
    check_logits(logits, batch.labels.numel(), "train");
    Tensor loss = hooks_.loss(logits, batch);
    MINIDL_CHECK(loss.defined() && loss.numel() == 1, "train: the loss function must return a scalar, got shape {}",
                 loss.defined() ? loss.shape() : Shape{});
    const double loss_value = loss.item();
    MINIDL_CHECK(std::isfinite(loss_value),
                 "train: the loss became {} at epoch {}, batch {} (lr {}); stopping before the weights are updated. "
                 "The last checkpoint on disk is intact; try a lower --lr or --clip",
                 loss_value, epoch_ + 1, b, lr);
    optimizer_->zero_grad();
    loss.backward();
    if (c.clip_grad_norm > 0) clip_grad_norm(model_->parameters(), c.clip_grad_norm);
    optimizer_->step();
    if (hooks_.after_step) hooks_.after_step(*this, optimizer_->steps());

    const int64_t n = batch.labels.numel();
    {
      NoGradGuard no_grad;
      correct += static_cast<int64_t>(sum(eq(argmax(logits, 1), batch.labels)).item());
    }
    loss_sum += loss_value * static_cast<double>(n);
    seen += n;
    ++b;
    r.lr = lr;
    if (progress) progress(epoch_ + 1, b, steps, loss_sum / seen, static_cast<double>(correct) / seen,
                           seen / seconds_since(start));
  }
  r.seconds = seconds_since(start);
  r.train_loss = seen ? loss_sum / seen : 0;
  r.train_accuracy = seen ? static_cast<double>(correct) / seen : 0;
  r.samples_per_second = seen / r.seconds;
  r.test = evaluate(*model_, test);
  ++epoch_;
  history_.push_back(r);
  if (hooks_.after_epoch) hooks_.after_epoch(*this, r);
  return r;
}

void Trainer::save(const std::string& path, const StateDict& extra_tensors, const Metadata& extra_metadata) const {
  StateDict tensors = model_->state_dict();
  for (const auto& [name, t] : optimizer_->state_dict()) tensors[kOptimizerPrefix + name] = t;
  for (const auto& [name, t] : extra_tensors) {
    MINIDL_CHECK(is_section_tensor(name) && name.rfind(kOptimizerPrefix, 0) != 0,
                 "save: extra tensor '{}' must be in a checkpoint section ('pruning.' ...), not among the model's", name);
    tensors[name] = t;
  }
  nlohmann::json hist = nlohmann::json::array();
  for (const EpochResult& e : history_) hist.push_back(to_json(e));
  // "arch" names the zoo model only when the model is exactly that one: a model
  // built by hand, or a zoo model since shrunk or converted, is "custom".
  const nlohmann::json spec = model_->spec();
  const auto& zoo = model_names();
  const bool is_zoo = std::find(zoo.begin(), zoo.end(), config_.model) != zoo.end() &&
                      build_model(config_)->spec() == spec;
  Metadata meta = {{"format", kFormat},
                   {"arch", is_zoo ? config_.model : "custom"},
                   {"model", spec.dump()},
                   {"optimizer", optimizer_->name()},
                   {"epoch", std::to_string(epoch_)},
                   {"config", config_.to_json().dump()},
                   {"history", hist.dump()}};
  for (const auto& [key, value] : extra_metadata) {
    MINIDL_CHECK(!meta.count(key), "save: extra metadata '{}' would overwrite the checkpoint's own", key);
    meta[key] = value;
  }
  save_safetensors(path, tensors, meta);
}

namespace {
// Splits a checkpoint into model and optimizer tensors, checking its metadata.
struct Loaded {
  SafeTensors file;
  StateDict model, optimizer;
};
Loaded read_checkpoint(SafeTensors file, const std::string& path) {
  Loaded l{std::move(file), {}, {}};
  auto& meta = l.file.metadata;
  if (!meta.count("model")) {
    // An older checkpoint: only the zoo name.
    auto arch = meta.find("arch");
    MINIDL_CHECK(arch != meta.end(),
                 "{}: neither a model spec ('model') nor an architecture ('arch') in the safetensors metadata; not a "
                 "minidl checkpoint",
                 path);
    const auto& names = model_names();
    MINIDL_CHECK(std::find(names.begin(), names.end(), arch->second) != names.end(),
                 "{}: unknown architecture '{}' in the metadata (known: mlp, mlp-small, cnn, resnet-s)", path,
                 arch->second);
  }
  const std::string prefix = kOptimizerPrefix;
  for (const auto& [name, t] : l.file.tensors) {
    if (name.rfind(prefix, 0) == 0) l.optimizer[name.substr(prefix.size())] = t;
    else if (!is_section_tensor(name)) l.model[name] = t;  // sections are their owners' to read
  }
  return l;
}

// The checkpoint's model spec, parsed; errors name the file.
nlohmann::json parse_spec(const std::string& path, const std::string& text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  MINIDL_CHECK(!j.is_discarded(), "{}: the model spec in the metadata ('model') is not valid JSON", path);
  return j;
}

// A short name for a checkpoint's model: its zoo name, else "custom".
std::string describe_model(const std::map<std::string, std::string>& meta) {
  auto arch = meta.find("arch");
  return arch != meta.end() && !arch->second.empty() ? arch->second : "custom";
}

// The metadata's epoch count and history, checked (a corrupt file is an Error, never a crash).
int64_t parse_epoch(const std::string& path, const std::string& text) {
  const std::optional<int64_t> v = parse_int(text);
  MINIDL_CHECK(v && *v >= 0, "{}: metadata 'epoch' = '{}' is not an epoch count", path, text);
  return *v;
}

std::vector<EpochResult> parse_history(const std::string& path, const std::string& text) {
  nlohmann::json h = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  MINIDL_CHECK(!h.is_discarded() && h.is_array(), "{}: metadata 'history' is not a JSON array", path);
  std::vector<EpochResult> out;
  for (const auto& e : h) {
    auto number = [&](const char* key) {
      auto it = e.is_object() ? e.find(key) : e.end();
      MINIDL_CHECK(e.is_object() && it != e.end() && it->is_number(), "{}: history entry {} has no number '{}'", path,
                   out.size(), key);
      return it->get<double>();
    };
    EpochResult r;
    r.epoch = static_cast<int64_t>(number("epoch"));
    r.train_loss = number("train_loss"), r.train_accuracy = number("train_accuracy");
    r.test.accuracy = number("test_accuracy"), r.test.loss = number("test_loss");
    out.push_back(r);
  }
  return out;
}
}  // namespace

void Trainer::resume(const std::string& path) { resume(load_safetensors(path), path); }

void Trainer::resume(SafeTensors file, const std::string& path) {
  Loaded l = read_checkpoint(std::move(file), path);
  auto& meta = l.file.metadata;
  if (meta.count("model")) {
    MINIDL_CHECK(parse_spec(path, meta["model"]) == model_->spec(),
                 "{}: checkpoint holds a different model ('{}') than the one being trained ('{}'): its layer tree "
                 "differs",
                 path, describe_model(meta), config_.model);
  } else {
    MINIDL_CHECK(meta["arch"] == config_.model, "{}: checkpoint holds a '{}' model but --model is '{}'", path,
                 meta["arch"], config_.model);
  }
  MINIDL_CHECK(meta["optimizer"] == optimizer_->name(), "{}: checkpoint was trained with {} but --opt is {}", path,
               meta["optimizer"], optimizer_->name());
  const int64_t epoch = parse_epoch(path, meta["epoch"]);
  std::vector<EpochResult> history = parse_history(path, meta["history"]);
  try {
    // The optimizer checks all of its state before changing anything; then the
    // model, whose layer tree is the checkpoint's (checked above).
    optimizer_->load_state_dict(l.optimizer);
    model_->load_state_dict(l.model);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  epoch_ = epoch;
  history_ = std::move(history);
}

ModulePtr load_model(const std::string& path, std::string* description) {
  return load_model(load_safetensors(path), path, description);
}

ModulePtr load_model(SafeTensors file, const std::string& path, std::string* description) {
  Loaded l = read_checkpoint(std::move(file), path);
  ModulePtr model;
  try {
    if (l.file.metadata.count("model")) {
      // The spec may not ask for (much) more memory than the file holds: twice its
      // elements plus 4 MB of slack, so a missing tensor still gets its own error.
      int64_t elements = 0;
      for (const auto& [name, t] : l.model) elements += t.numel();
      model = module_from_spec(parse_spec(path, l.file.metadata["model"]), 2 * elements + (1 << 20));
    } else {
      Generator gen(0);
      model = build_model(l.file.metadata["arch"], gen);
    }
    model->load_state_dict(l.model);
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  if (description) *description = describe_model(l.file.metadata);
  return model;
}

void save_model(const std::string& path, const Module& model, const Metadata& extra_metadata) {
  Metadata meta = {{"format", kFormat}, {"arch", "custom"}, {"model", model.spec().dump()}};
  for (const auto& [key, value] : extra_metadata) {
    MINIDL_CHECK(!meta.count(key), "save_model: extra metadata '{}' would overwrite the checkpoint's own", key);
    meta[key] = value;
  }
  save_safetensors(path, model.state_dict(), meta);
}

nlohmann::json to_json(const EvalResult& r) {
  return {{"loss", r.loss},       {"accuracy", r.accuracy},
          {"samples", r.samples}, {"seconds", r.seconds},
          {"per_class_accuracy", r.per_class_accuracy}, {"confusion", r.confusion}};
}

nlohmann::json to_json(const EpochResult& r) {
  return {{"epoch", r.epoch},
          {"train_loss", r.train_loss},
          {"train_accuracy", r.train_accuracy},
          {"test_loss", r.test.loss},
          {"test_accuracy", r.test.accuracy},
          {"seconds", r.seconds},
          {"samples_per_second", r.samples_per_second},
          {"lr", r.lr}};
}

}  // namespace minidl::nn
