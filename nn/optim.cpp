#include "nn/optim.h"

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "ops/factory.h"

namespace minidl::nn {

namespace {
// The raw f32 view of a CPU parameter's data and gradient. Optimizers run
// on contiguous f32 CPU parameters for now; anything else is a clear error.
struct Slot {
  float* p;
  const float* g;
  int64_t n;
};
Slot slot(const char* opt, const Tensor& p, size_t i) {
  MINIDL_CHECK(p.device().is_cpu() && p.dtype() == DType::f32 && p.is_contiguous(),
               "{}: parameter {} must be a contiguous f32 CPU tensor (got {} on {})", opt, i, p.dtype(), p.device());
  const Tensor& g = p.grad();
  MINIDL_CHECK(!g.defined() || g.shape() == p.shape(), "{}: gradient of parameter {} has shape {}, expected {}", opt, i,
               g.defined() ? g.shape() : Shape{}, p.shape());
  if (g.defined() && (!g.is_contiguous() || g.dtype() != DType::f32)) p.set_grad(g.contiguous().to(DType::f32));
  return {p.data_ptr<float>(), p.grad().defined() ? p.grad().data_ptr<float>() : nullptr, p.numel()};
}
}  // namespace

Optimizer::Optimizer(std::vector<Tensor> params, double lr) : params_(std::move(params)), lr_(lr) {
  MINIDL_CHECK(!params_.empty(), "optimizer: got an empty parameter list");
  MINIDL_CHECK(lr >= 0, "optimizer: learning rate must be >= 0, got {}", lr);
  for (size_t i = 0; i < params_.size(); ++i)
    MINIDL_CHECK(params_[i].requires_grad(), "optimizer: parameter {} does not require grad", i);
}

void Optimizer::zero_grad() {
  for (const Tensor& p : params_) p.set_grad(Tensor());
}

Tensor& Optimizer::state(const std::string& kind, size_t i) {
  auto& v = state_[kind];
  if (v.empty()) v.resize(params_.size());
  if (!v[i].defined()) v[i] = zeros(params_[i].shape());
  return v[i];
}

StateDict Optimizer::state_dict() const {
  StateDict out;
  for (const auto& [kind, tensors] : state_)
    for (size_t i = 0; i < tensors.size(); ++i)
      if (tensors[i].defined()) out[kind + "." + std::to_string(i)] = tensors[i];
  out["step"] = scalar_tensor(static_cast<double>(steps_), {.dtype = DType::int64});
  return out;
}

void Optimizer::load_state_dict(const StateDict& state) {
  NoGradGuard no_grad;
  auto step_it = state.find("step");
  MINIDL_CHECK(step_it != state.end(), "optimizer state: missing 'step'");
  steps_ = static_cast<int64_t>(step_it->second.item());
  state_.clear();
  for (const auto& [name, t] : state) {
    if (name == "step") continue;
    auto dot = name.rfind('.');
    MINIDL_CHECK(dot != std::string::npos, "optimizer state: unexpected tensor '{}'", name);
    size_t i = std::stoul(name.substr(dot + 1));
    MINIDL_CHECK(i < params_.size(), "optimizer state: '{}' refers to parameter {} but there are {}", name, i,
                 params_.size());
    MINIDL_CHECK(t.shape() == params_[i].shape(), "optimizer state: '{}' has shape {} but parameter {} has {}", name,
                 t.shape(), i, params_[i].shape());
    this->state(name.substr(0, dot), i).copy_(t);
  }
}

// ---------------------------------------------------------------- SGD

SGD::SGD(std::vector<Tensor> params, SGDOptions o) : Optimizer(std::move(params), o.lr), options(o) {
  MINIDL_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
               "sgd: nesterov needs momentum > 0 and dampening 0");
}

// torch.optim.SGD:
//   g = grad + wd·p
//   buf = g (first step), else momentum·buf + (1 - dampening)·g
//   g = g + momentum·buf (nesterov), else buf
//   p = p - lr·g
void SGD::step() {
  NoGradGuard no_grad;
  const float lr = static_cast<float>(lr_), wd = static_cast<float>(options.weight_decay);
  const float mom = static_cast<float>(options.momentum), damp = static_cast<float>(1 - options.dampening);
  for (size_t i = 0; i < params_.size(); ++i) {
    Slot s = slot("sgd", params_[i], i);
    if (!s.g) continue;
    float* buf = mom != 0 ? state("momentum_buffer", i).data_ptr<float>() : nullptr;
    const bool first = steps_ == 0;
#pragma omp parallel for if (s.n > 65536)
    for (int64_t k = 0; k < s.n; ++k) {
      float g = s.g[k] + wd * s.p[k];
      if (buf) {
        buf[k] = first ? g : mom * buf[k] + damp * g;
        g = options.nesterov ? g + mom * buf[k] : buf[k];
      }
      s.p[k] -= lr * g;
    }
  }
  ++steps_;
}

// ---------------------------------------------------------------- Adam / AdamW

Adam::Adam(std::vector<Tensor> params, AdamOptions o, bool decoupled)
    : Optimizer(std::move(params), o.lr), options(o), decoupled_(decoupled) {
  MINIDL_CHECK(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, "{}: betas must be in [0, 1), got ({}, {})",
               name(), o.beta1, o.beta2);
}

// torch.optim.Adam / AdamW, step t = 1, 2, ...:
//   AdamW: p = p·(1 - lr·wd)          Adam: g = grad + wd·p
//   m = β1·m + (1 - β1)·g,   v = β2·v + (1 - β2)·g²
//   p = p - lr · (m / (1 - β1^t)) / (sqrt(v / (1 - β2^t)) + eps)
void Adam::step() {
  NoGradGuard no_grad;
  const int64_t t = steps_ + 1;
  const double bc1 = 1 - std::pow(options.beta1, static_cast<double>(t));
  const double bc2 = 1 - std::pow(options.beta2, static_cast<double>(t));
  const float lr = static_cast<float>(lr_), wd = static_cast<float>(options.weight_decay);
  const float b1 = static_cast<float>(options.beta1), b2 = static_cast<float>(options.beta2);
  const float eps = static_cast<float>(options.eps);
  const float step_size = static_cast<float>(lr_ / bc1), inv_sqrt_bc2 = static_cast<float>(1 / std::sqrt(bc2));
  for (size_t i = 0; i < params_.size(); ++i) {
    Slot s = slot(name().c_str(), params_[i], i);
    if (!s.g) continue;
    float* m = state("exp_avg", i).data_ptr<float>();
    float* v = state("exp_avg_sq", i).data_ptr<float>();
    const bool decoupled = decoupled_;
#pragma omp parallel for if (s.n > 65536)
    for (int64_t k = 0; k < s.n; ++k) {
      float g = s.g[k];
      if (decoupled) s.p[k] *= 1 - lr * wd;
      else g += wd * s.p[k];
      m[k] = b1 * m[k] + (1 - b1) * g;
      v[k] = b2 * v[k] + (1 - b2) * g * g;
      s.p[k] -= step_size * m[k] / (std::sqrt(v[k]) * inv_sqrt_bc2 + eps);
    }
  }
  ++steps_;
}

// ---------------------------------------------------------------- clipping, schedules

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  NoGradGuard no_grad;
  double total = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].grad().defined()) continue;
    Slot s = slot("clip_grad_norm", params[i], i);
    double acc = 0;
#pragma omp parallel for reduction(+ : acc) if (s.n > 65536)
    for (int64_t k = 0; k < s.n; ++k) acc += static_cast<double>(s.g[k]) * s.g[k];
    total += acc;
  }
  const double norm = std::sqrt(total);
  if (norm > max_norm && norm > 0) {
    const float scale = static_cast<float>(max_norm / (norm + 1e-6));
    for (const Tensor& p : params)
      if (p.grad().defined()) {
        float* g = p.grad().data_ptr<float>();
        for (int64_t k = 0; k < p.numel(); ++k) g[k] *= scale;
      }
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
