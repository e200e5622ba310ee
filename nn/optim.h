// nn/optim.h — SGD, Adam, AdamW; learning-rate schedules; gradient clipping.
//
// Each optimizer's step is written out as the update equations of the PyTorch
// optimizer of the same name (quoted above each step); the arithmetic is one
// fused kernel per parameter (ops/optim.h), on the parameter's device, with no
// allocation per step after the first. Their state (momentum buffers, Adam's
// moments and step count) is keyed by parameter name ("exp_avg.3.weight"), so it
// can be saved, restored for `train --resume`, and checked against the model.
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"

namespace minidl::nn {

class Optimizer {
 public:
  // Parameters with their names, as Module::named_parameters() gives them.
  Optimizer(NamedTensors params, double lr);
  // Unnamed parameters are named by position: "0", "1", ...
  Optimizer(const std::vector<Tensor>& params, double lr);
  virtual ~Optimizer() = default;

  virtual void step() = 0;
  void zero_grad();
  double lr() const { return lr_; }
  // With the parameters on a GPU the rate is also kept there (see device_lr), so
  // a CUDA graph of step() replays with the rate set last, not the capture's.
  // Refused while a graph is being captured (the write would be frozen into it).
  void set_lr(double lr);
  // Steps taken. With the parameters on a GPU the count lives there (see
  // advance_step_count) and reading it waits for the device.
  int64_t steps() const;
  virtual std::string name() const = 0;

  // State as named tensors ("exp_avg.3.weight" = the first moment of parameter
  // "3.weight") plus the step count.
  StateDict state_dict() const;
  // Errors name the state tensor and the parameter: an unknown parameter name,
  // or a shape that no longer matches (a model that changed since it was saved).
  void load_state_dict(const StateDict& state);

 protected:
  // Per-parameter state tensors, lazily zero-initialised f32, shaped like the parameter.
  Tensor& state(const std::string& kind, size_t i);
  // The parameter's gradient after the checks every step makes; undefined if none.
  Tensor grad_of(size_t i) const;
  // Counts this step. On a GPU the count is also kept in device memory and
  // advanced there by a kernel, and that tensor is returned for the update
  // kernels to read (ops/optim.h): a CUDA graph replaying step() then advances
  // it at every replay, where a count passed from the host would be frozen at
  // the capture's. Undefined for parameters on the CPU.
  Tensor advance_step_count();
  // The learning rate as a 0-d f64 tensor on the parameters' GPU, for the update
  // kernels to read (ops/optim.h); undefined on the CPU.
  Tensor device_lr();
  NamedTensors params_;
  double lr_;
  int64_t steps_ = 0;  // the host's count (steps() prefers the device's where there is one)

 private:
  Tensor device_steps_;  // 0-d int64 on the parameters' GPU, or undefined
  Tensor device_lr_;     // 0-d f64 there, or undefined
  std::map<std::string, std::vector<Tensor>> state_;
};

struct SGDOptions {
  double lr = 0.01;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};

class SGD : public Optimizer {
 public:
  SGD(NamedTensors params, SGDOptions options);
  SGD(const std::vector<Tensor>& params, SGDOptions options);
  void step() override;
  std::string name() const override { return "sgd"; }
  SGDOptions options;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;  // Adam: added to the gradient (L2); AdamW: decoupled decay
};

class Adam : public Optimizer {
 public:
  Adam(NamedTensors params, AdamOptions options, bool decoupled_weight_decay = false);
  Adam(const std::vector<Tensor>& params, AdamOptions options, bool decoupled_weight_decay = false);
  void step() override;
  std::string name() const override { return decoupled_ ? "adamw" : "adam"; }
  AdamOptions options;

 private:
  bool decoupled_;
};

// AdamW: Adam with weight decay applied to the weights directly (Loshchilov & Hutter).
// PyTorch's default weight_decay for AdamW is 0.01.
class AdamW : public Adam {
 public:
  AdamW(NamedTensors params, AdamOptions options) : Adam(std::move(params), options, true) {}
  AdamW(const std::vector<Tensor>& params, AdamOptions options) : Adam(params, options, true) {}
};

// Scales all gradients so their joint L2 norm is at most max_norm; returns the norm before.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// Learning rate as a function of the step (0-based), from a base rate.
class LRSchedule {
 public:
  virtual ~LRSchedule() = default;
  virtual double lr_at(int64_t step) const = 0;
};

// base · gamma^(step / step_size)
class StepLR : public LRSchedule {
 public:
  StepLR(double base_lr, int64_t step_size, double gamma) : base_(base_lr), step_size_(step_size), gamma_(gamma) {}
  double lr_at(int64_t step) const override;

 private:
  double base_;
  int64_t step_size_;
  double gamma_;
};

// Linear warm-up from 0 over `warmup` steps, then a half cosine from base down to min_lr at `total`.
class CosineWithWarmup : public LRSchedule {
 public:
  CosineWithWarmup(double base_lr, int64_t warmup, int64_t total, double min_lr = 0)
      : base_(base_lr), warmup_(warmup), total_(total), min_(min_lr) {}
  double lr_at(int64_t step) const override;

 private:
  double base_;
  int64_t warmup_, total_;
  double min_;
};

}  // namespace minidl::nn
