#include "nn/optim.h"

#include <cmath>
#include <tuple>

#include "core/autograd.h"
#include "core/check.h"
#include "cuda/runtime.h"
#include "ops/elementwise.h"
#include "ops/factory.h"
#include "ops/optim.h"
#include "ops/reduce.h"

namespace minidl::nn {

namespace {
NamedTensors name_by_position(const std::vector<Tensor>& params) {
  NamedTensors named;
  for (size_t i = 0; i < params.size(); ++i) named.emplace_back(std::to_string(i), params[i]);
  return named;
}
}  // namespace

Optimizer::Optimizer(NamedTensors params, double lr) : params_(std::move(params)), lr_(lr) {
  MINIDL_CHECK(!params_.empty(), "optimizer: got an empty parameter list");
  MINIDL_CHECK(lr >= 0, "optimizer: learning rate must be >= 0, got {}", lr);
  for (const auto& [name, p] : params_) {
    MINIDL_CHECK(p.requires_grad(), "optimizer: parameter '{}' does not require grad", name);
    MINIDL_CHECK(name.find('.') != 0 && !name.empty(), "optimizer: parameter names must be non-empty, got '{}'", name);
  }
}
Optimizer::Optimizer(const std::vector<Tensor>& params, double lr) : Optimizer(name_by_position(params), lr) {}

void Optimizer::zero_grad() {
  for (const auto& [name, p] : params_) p.set_grad(Tensor());
}

Tensor& Optimizer::state(const std::string& kind, size_t i) {
  auto& v = state_[kind];
  if (v.empty()) v.resize(params_.size());
  const Tensor& p = params_[i].second;
  if (!v[i].defined()) v[i] = zeros(p.shape(), {.dtype = DType::f32, .device = p.device()});
  return v[i];
}

Tensor Optimizer::grad_of(size_t i) const {
  const auto& [name, p] = params_[i];
  const Tensor& g = p.grad();
  MINIDL_CHECK(!g.defined() || g.shape() == p.shape(), "{}: gradient of parameter '{}' has shape {}, expected {}",
               this->name(), name, g.defined() ? g.shape() : Shape{}, p.shape());
  return g;
}

namespace {
// Made on the device at the first step there: never inside a capture, where the
// fill that gives it its value would be replayed too and freeze it.
void check_not_capturing(const Optimizer& o, const char* what) {
  MINIDL_CHECK(!cuda::capturing(),
               "{}: {} while a CUDA graph is being captured would be frozen into it: run one step before the "
               "capture, and change the learning rate between replays",
               o.name(), what);
}
}  // namespace

Tensor Optimizer::advance_step_count() {
  ++steps_;
  const Device device = params_.front().second.device();
  if (!device.is_cuda()) return Tensor();
  if (!device_steps_.defined() || device_steps_.device() != device) {
    check_not_capturing(*this, "placing the step count on the GPU");
    device_steps_ = full({}, static_cast<double>(steps_ - 1), {.dtype = DType::int64, .device = device});
  }
  device_steps_.copy_(add(device_steps_, 1.0));  // kernels only: a graph can hold them
  return device_steps_;
}

Tensor Optimizer::device_lr() {
  const Device device = params_.front().second.device();
  if (!device.is_cuda()) return Tensor();
  if (!device_lr_.defined() || device_lr_.device() != device) {
    check_not_capturing(*this, "placing the learning rate on the GPU");
    device_lr_ = full({}, lr_, {.dtype = DType::f64, .device = device});
  }
  return device_lr_;
}

void Optimizer::set_lr(double lr) {
  MINIDL_CHECK(lr >= 0, "{}: learning rate must be >= 0, got {}", name(), lr);
  if (device_lr_.defined()) {
    check_not_capturing(*this, "set_lr");
    device_lr_.fill_(lr);  // on the stream: the steps and replays queued after it read the new rate
  }
  lr_ = lr;
}

int64_t Optimizer::steps() const {
  return device_steps_.defined() ? static_cast<int64_t>(device_steps_.item()) : steps_;
}

StateDict Optimizer::state_dict() const {
  StateDict out;
  for (const auto& [kind, tensors] : state_)
    for (size_t i = 0; i < tensors.size(); ++i)
      if (tensors[i].defined()) out[kind + "." + params_[i].first] = tensors[i];
  out["step"] = scalar_tensor(static_cast<double>(steps()), {.dtype = DType::int64});
  return out;
}

void Optimizer::load_state_dict(const StateDict& state) {
  NoGradGuard no_grad;
  auto step_it = state.find("step");
  MINIDL_CHECK(step_it != state.end() && step_it->second.numel() == 1, "optimizer state: missing 'step'");
  const double step = step_it->second.item();
  MINIDL_CHECK(step >= 0 && step < 9.0e15 && step == std::floor(step),
               "optimizer state: 'step' must be a non-negative integer, got {}", step);
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < params_.size(); ++i) index[params_[i].first] = i;
  // Check everything before changing anything: a refused state leaves the optimizer as it was.
  std::vector<std::tuple<std::string, size_t, Tensor>> loads;
  for (const auto& [name, t] : state) {
    if (name == "step") continue;
    auto dot = name.find('.');
    MINIDL_CHECK(dot != std::string::npos && dot > 0,
                 "optimizer state: unexpected tensor '{}' (expected KIND.PARAMETER)", name);
    const std::string param = name.substr(dot + 1);
    auto it = index.find(param);
    MINIDL_CHECK(it != index.end(), "optimizer state: '{}' is for parameter '{}', which the model does not have", name,
                 param);
    const Tensor& p = params_[it->second].second;
    MINIDL_CHECK(t.shape() == p.shape(),
                 "optimizer state: '{}' has shape {} but parameter '{}' has shape {} (was the model changed since the "
                 "checkpoint was written?)",
                 name, t.shape(), param, p.shape());
    loads.emplace_back(name.substr(0, dot), it->second, t);
  }
  steps_ = static_cast<int64_t>(step);
  device_steps_ = Tensor();  // made again from steps_ at the next step
  state_.clear();
  for (const auto& [kind, i, t] : loads) this->state(kind, i).copy_(t);
}

// ---------------------------------------------------------------- SGD

SGD::SGD(NamedTensors params, SGDOptions o) : Optimizer(std::move(params), o.lr), options(o) {
  MINIDL_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
               "sgd: nesterov needs momentum > 0 and dampening 0");
}
SGD::SGD(const std::vector<Tensor>& params, SGDOptions o) : SGD(name_by_position(params), o) {}

// torch.optim.SGD:
//   g = grad + wd·p
//   buf = g (first step), else momentum·buf + (1 - dampening)·g
//   g = g + momentum·buf (nesterov), else buf
//   p = p - lr·g
void SGD::step() {
  NoGradGuard no_grad;
  const Tensor count = advance_step_count(), rate = device_lr();
  const SgdStepArgs args{.lr = lr_, .momentum = options.momentum, .dampening = options.dampening,
                         .weight_decay = options.weight_decay, .nesterov = options.nesterov,
                         .first_step = steps_ == 1};
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = grad_of(i);
    if (!g.defined()) continue;
    Tensor buffer = options.momentum != 0 ? state("momentum_buffer", i) : Tensor();
    sgd_step(params_[i].second, g, buffer, args, count, rate);
  }
}

// ---------------------------------------------------------------- Adam / AdamW

Adam::Adam(NamedTensors params, AdamOptions o, bool decoupled)
    : Optimizer(std::move(params), o.lr), options(o), decoupled_(decoupled) {
  MINIDL_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "{}: betas must be in [0, 1), got ({}, {})",
               name(), o.beta1, o.beta2);
}
Adam::Adam(const std::vector<Tensor>& params, AdamOptions o, bool decoupled)
    : Adam(name_by_position(params), o, decoupled) {}

// torch.optim.Adam / AdamW, step t = 1, 2, ...:
//   AdamW: p = p·(1 - lr·wd)          Adam: g = grad + wd·p
//   m = β1·m + (1 - β1)·g,   v = β2·v + (1 - β2)·g²
//   p = p - lr · (m / (1 - β1^t)) / (sqrt(v / (1 - β2^t)) + eps)
void Adam::step() {
  NoGradGuard no_grad;
  const Tensor count = advance_step_count(), rate = device_lr();
  const AdamStepArgs args{.lr = lr_, .beta1 = options.beta1, .beta2 = options.beta2, .eps = options.eps,
                          .weight_decay = options.weight_decay, .decoupled_weight_decay = decoupled_,
                          .step = steps_};
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = grad_of(i);
    if (!g.defined()) continue;
    adam_step(params_[i].second, g, state("exp_avg", i), state("exp_avg_sq", i), args, count, rate);
  }
}

// ---------------------------------------------------------------- clipping, schedules

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  // A negative bound would flip every gradient's sign; NaN would pass no comparison.
  MINIDL_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be positive, got {}", max_norm);
  NoGradGuard no_grad;
  // Σ‖g‖² in f64, added up where the gradients live and read back once: on a
  // GPU one synchronisation for the whole model, not one per parameter.
  Tensor total;
  for (const Tensor& p : params) {
    const Tensor& g = p.grad();
    if (!g.defined()) continue;
    Tensor g64 = g.to(DType::f64);
    Tensor squares = sum(mul(g64, g64));
    total = total.defined() ? add(total, squares.to(total.device())) : squares;
  }
  const double norm = total.defined() ? std::sqrt(total.item()) : 0.0;
  if (norm > max_norm && norm > 0) {
    const double scale = max_norm / (norm + 1e-6);
    for (const Tensor& p : params)
      if (p.grad().defined()) p.set_grad(mul(p.grad(), scale));
  }
  return norm;
}

double StepLR::lr_at(int64_t step) const {
  return base_ * std::pow(gamma_, static_cast<double>(step / std::max<int64_t>(step_size_, 1)));
}

double CosineWithWarmup::lr_at(int64_t step) const {
  if (step < warmup_) return base_ * static_cast<double>(step + 1) / static_cast<double>(warmup_);
  if (step >= total_) return min_;
  const double progress = static_cast<double>(step - warmup_) / static_cast<double>(std::max<int64_t>(total_ - warmup_, 1));
  return min_ + 0.5 * (base_ - min_) * (1 + std::cos(M_PI * progress));
}

}  // namespace minidl::nn
