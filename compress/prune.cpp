// compress/prune.cpp — choosing which weights to prune, and keeping them at zero.
//
// Choosing is an offline step over the weights' values, done on the host: the
// scores are collected once, the k smallest found with nth_element (O(n)), and
// the masks written back as bool tensors on the parameter's device.
#include "compress/prune.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/autograd.h"
#include "core/check.h"
#include "nn/optim.h"
#include "nn/train.h"
#include "ops/elementwise.h"
#include "ops/factory.h"
#include "ops/reduce.h"

namespace minidl::compress {

int64_t Amount::of(const char* op, const std::string& what, int64_t n) const {
  if (is_count_) {
    MINIDL_CHECK(value_ >= 0 && value_ <= static_cast<double>(n), "{}: amount {} is {} the {} elements of {}", op,
                 static_cast<int64_t>(value_), value_ < 0 ? "negative, not a count of" : "more than", n, what);
    return static_cast<int64_t>(value_);
  }
  MINIDL_CHECK(value_ >= 0 && value_ <= 1,
               "{}: amount {} is outside [0, 1] (a fraction of {}; use a count for "
               "a number of elements)",
               op, value_, what);
  return std::llround(value_ * static_cast<double>(n));  // PyTorch: round(amount * n)
}

nlohmann::json Amount::to_json() const {
  if (is_count_) return {{"count", static_cast<int64_t>(value_)}};
  return {{"fraction", value_}};
}

Tensor Pruner::parameter(const char* op, const std::string& name) const {
  std::string known;
  for (const auto& [n, t] : model_.named_parameters()) {
    if (n == name) return t;
    known += (known.empty() ? "" : ", ") + n;
  }
  fail("{}: the model has no parameter '{}' (it has: {})", op, name, known);
}

namespace {
// The parameter's values and its current mask (all kept when none), on the host.
struct HostView {
  std::vector<float> values;
  std::vector<bool> kept;
};
HostView host_view(const Tensor& p, const std::map<std::string, Tensor>& masks, const std::string& name) {
  HostView v{p.to(kCPU).to(DType::f32).contiguous().to_vector<float>(), {}};
  auto it = masks.find(name);
  v.kept = it != masks.end() ? it->second.to(kCPU).to_vector<bool>() : std::vector<bool>(v.values.size(), true);
  return v;
}
std::vector<std::vector<bool>> kept_of(const std::vector<HostView>& views) {
  std::vector<std::vector<bool>> out;
  for (const HostView& v : views) out.push_back(v.kept);
  return out;
}
}  // namespace

void Pruner::prune_more(const std::vector<std::string>& params, std::vector<std::vector<bool>> keep, int64_t extra,
                        const std::vector<int64_t>& order) {
  // order lists kept positions (over the concatenated parameters) best-to-prune first.
  std::vector<int64_t> offset;
  int64_t total = 0;
  for (const auto& k : keep) {
    offset.push_back(total);
    total += static_cast<int64_t>(k.size());
  }
  for (int64_t i = 0; i < extra; ++i) {
    const int64_t flat = order[static_cast<size_t>(i)];
    const size_t which = static_cast<size_t>(std::upper_bound(offset.begin(), offset.end(), flat) - offset.begin() - 1);
    keep[which][static_cast<size_t>(flat - offset[which])] = false;
  }
  NoGradGuard no_grad;
  for (size_t k = 0; k < params.size(); ++k) {
    Tensor p = parameter("prune", params[k]);
    masks_[params[k]] = from_vector<bool>(keep[k], p.shape()).to(p.device());
  }
  apply();
}

namespace {
// Positions (into the concatenation of `views`) still kept, and how many are pruned already.
struct Candidates {
  std::vector<int64_t> positions;
  std::vector<float> scores;  // |w| at each position
  int64_t total = 0, pruned = 0;
};
Candidates candidates(const std::vector<HostView>& views) {
  Candidates c;
  for (const HostView& v : views) {
    for (size_t i = 0; i < v.values.size(); ++i) {
      if (v.kept[i]) {
        c.positions.push_back(c.total + static_cast<int64_t>(i));
        c.scores.push_back(std::abs(v.values[i]));
      } else {
        ++c.pruned;
      }
    }
    c.total += static_cast<int64_t>(v.values.size());
  }
  return c;
}

// The `extra` kept positions of smallest score (ties to the lower position), first.
std::vector<int64_t> smallest(const Candidates& c, int64_t extra) {
  std::vector<size_t> idx(c.positions.size());
  std::iota(idx.begin(), idx.end(), size_t{0});
  auto less = [&](size_t a, size_t b) { return c.scores[a] < c.scores[b] || (c.scores[a] == c.scores[b] && a < b); };
  if (extra < static_cast<int64_t>(idx.size())) std::nth_element(idx.begin(), idx.begin() + extra, idx.end(), less);
  std::vector<int64_t> out;
  for (int64_t i = 0; i < extra; ++i) out.push_back(c.positions[idx[static_cast<size_t>(i)]]);
  return out;
}
}  // namespace

Pruner& Pruner::l1_unstructured(const std::string& param, Amount amount) {
  prune_by_magnitude("l1_unstructured", {param}, amount);
  return *this;
}

Pruner& Pruner::global_unstructured(const std::vector<std::string>& params, Amount amount) {
  MINIDL_CHECK(!params.empty(), "global_unstructured: no parameters given");
  prune_by_magnitude("global_unstructured", params, amount);
  return *this;
}

void Pruner::prune_by_magnitude(const char* method, const std::vector<std::string>& params, Amount amount) {
  std::vector<HostView> views;
  for (const std::string& name : params) views.push_back(host_view(parameter(method, name), masks_, name));
  Candidates c = candidates(views);
  const std::string what = params.size() == 1 ? "'" + params[0] + "'" : fmt::format("{} parameters", params.size());
  const int64_t extra = std::max<int64_t>(0, amount.of(method, what, c.total) - c.pruned);
  prune_more(params, kept_of(views), extra, smallest(c, extra));
  recipe_.push_back({{"method", method}, {"amount", amount.to_json()}, {"params", params}});
}

Pruner& Pruner::random_unstructured(const std::string& param, Amount amount, Generator& gen) {
  std::vector<HostView> views{host_view(parameter("random_unstructured", param), masks_, param)};
  Candidates c = candidates(views);
  const int64_t target = amount.of("random_unstructured", "'" + param + "'", c.total);
  const int64_t extra = std::max<int64_t>(0, target - c.pruned);
  // The first `extra` of a partial Fisher–Yates shuffle of the kept positions.
  std::vector<int64_t> pos = c.positions;
  for (int64_t i = 0; i < extra; ++i) {
    const uint64_t j =
        static_cast<uint64_t>(i) + gen.below(static_cast<uint64_t>(pos.size()) - static_cast<uint64_t>(i));
    std::swap(pos[static_cast<size_t>(i)], pos[j]);
  }
  prune_more({param}, kept_of(views), extra, pos);
  recipe_.push_back({{"method", "random_unstructured"}, {"amount", amount.to_json()}, {"params", {param}}});
  return *this;
}

Pruner& Pruner::remove(const std::string& param) {
  parameter("remove", param);  // a clear error for an unknown name
  MINIDL_CHECK(masks_.count(param), "remove: parameter '{}' has not been pruned", param);
  apply();
  masks_.erase(param);
  recipe_.push_back({{"method", "remove"}, {"params", {param}}});
  return *this;
}

void Pruner::apply() const {
  NoGradGuard no_grad;
  for (const auto& [name, mask] : masks_) {
    Tensor p = parameter("apply", name);
    p.copy_(mul(p, mask.to(p.dtype())));
  }
}

void Pruner::apply(nn::Optimizer& optimizer) const {
  apply();
  NoGradGuard no_grad;
  // State tensors are named KIND.PARAMETER ("exp_avg.1.weight"); mask those of pruned parameters.
  for (const auto& [name, t] : optimizer.state_dict()) {
    const auto dot = name.find('.');
    if (dot == std::string::npos) continue;
    auto it = masks_.find(name.substr(dot + 1));
    if (it == masks_.end() || t.shape() != it->second.shape()) continue;
    Tensor(t).copy_(mul(t, it->second.to(t.dtype())));
  }
}

double AgpSchedule::sparsity_at(int64_t step) const {
  if (step <= begin_step) return initial;
  if (step >= end_step) return final;
  const double progress = static_cast<double>(step - begin_step) / static_cast<double>(end_step - begin_step);
  return final + (initial - final) * std::pow(1 - progress, 3);
}

nlohmann::json AgpSchedule::to_json() const {
  return {{"initial", initial}, {"final", final}, {"begin_step", begin_step}, {"end_step", end_step}, {"every", every}};
}

std::function<void(nn::Trainer&, int64_t)> Pruner::gradual(const std::vector<std::string>& params,
                                                           const AgpSchedule& schedule, bool global) {
  MINIDL_CHECK(schedule.initial >= 0 && schedule.final <= 1 && schedule.initial <= schedule.final,
               "agp: sparsities must satisfy 0 <= initial {} <= final {} <= 1", schedule.initial, schedule.final);
  MINIDL_CHECK(schedule.every >= 1 && schedule.end_step > schedule.begin_step && schedule.begin_step >= 0,
               "agp: needs 0 <= begin_step {} < end_step {} and every {} >= 1", schedule.begin_step, schedule.end_step,
               schedule.every);
  for (const std::string& p : params) parameter("agp", p);  // unknown names fail now, not mid-training
  recipe_.push_back({{"method", global ? "agp_global_unstructured" : "agp_l1_unstructured"},
                     {"schedule", schedule.to_json()}, {"params", params}});
  return [this, params, schedule, global](nn::Trainer& trainer, int64_t step) {
    const int64_t since = step - schedule.begin_step;
    if ((since >= 0 && since % schedule.every == 0 && step <= schedule.end_step) || step == schedule.end_step) {
      const Amount target = Amount::fraction(schedule.sparsity_at(step));
      const size_t recorded = recipe_.size();
      if (global) global_unstructured(params, target);
      else
        for (const std::string& p : params) l1_unstructured(p, target);
      recipe_.erase(recipe_.begin() + static_cast<std::ptrdiff_t>(recorded), recipe_.end());  // the schedule says it
    }
    apply(trainer.optimizer());
  };
}

std::function<void(nn::Trainer&, int64_t)> Pruner::after_step() const {
  return [this](nn::Trainer& trainer, int64_t) { apply(trainer.optimizer()); };
}

double Pruner::sparsity(const std::string& param) const {
  NoGradGuard no_grad;
  Tensor p = parameter("sparsity", param);
  if (p.numel() == 0) return 0;
  return sum(eq(p, scalar_tensor(0.0, {.dtype = p.dtype(), .device = p.device()})).to(DType::f64)).item() /
         static_cast<double>(p.numel());
}

namespace {
constexpr const char* kMaskPrefix = "pruning.mask.";
}  // namespace

nn::StateDict Pruner::checkpoint_tensors() const {
  nn::StateDict out;
  for (const auto& [name, mask] : masks_) out[kMaskPrefix + name] = mask;
  return out;
}

nn::Metadata Pruner::checkpoint_metadata() const { return {{"pruning", recipe_.dump()}}; }

void Pruner::load_from(const nn::SafeTensors& file, const std::string& path) {
  std::map<std::string, Tensor> masks;
  const std::string prefix = kMaskPrefix;
  NoGradGuard no_grad;
  for (const auto& [tensor_name, mask] : file.tensors) {
    if (tensor_name.rfind("pruning.", 0) != 0) continue;
    MINIDL_CHECK(tensor_name.rfind(prefix, 0) == 0, "{}: unexpected pruning tensor '{}' (expected {}PARAMETER)", path,
                 tensor_name, prefix);
    const std::string param = tensor_name.substr(prefix.size());
    Tensor p;
    try {
      p = parameter("load pruning masks", param);
    } catch (const Error& e) {
      fail("{}: tensor '{}': {}", path, tensor_name, e.what());
    }
    MINIDL_CHECK(mask.dtype() == DType::boolean && mask.shape() == p.shape(),
                 "{}: tensor '{}' must be a bool mask of shape {}, got {} {}", path, tensor_name, p.shape(),
                 mask.dtype(), mask.shape());
    // Where the mask prunes, the saved weight must be zero: otherwise mask and weights are from different files.
    Tensor kept_or_zero = logical_or(mask, eq(p, scalar_tensor(0.0, {.dtype = p.dtype()})));
    MINIDL_CHECK(sum(kept_or_zero.to(DType::int64)).item() == static_cast<double>(p.numel()),
                 "{}: tensor '{}' prunes weights of '{}' that are not zero in the file", path, tensor_name, param);
    masks[param] = mask.to(p.device());
  }
  nlohmann::json recipe = nlohmann::json::array();
  if (auto it = file.metadata.find("pruning"); it != file.metadata.end()) {
    recipe = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
    MINIDL_CHECK(!recipe.is_discarded() && recipe.is_array(), "{}: metadata 'pruning' is not a JSON array (the recipe)",
                 path);
  }
  masks_ = std::move(masks);
  recipe_ = std::move(recipe);
}

}  // namespace minidl::compress
