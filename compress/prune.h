// compress/prune.h — unstructured pruning: masks that zero weights, and keep them
// zero while the model is fine-tuned.
//
//   compress::Pruner pruner(*model);
//   pruner.global_unstructured({"1.weight", "3.weight", "5.weight"}, Amount::fraction(0.9));
//   Trainer trainer(model, config, {.after_step = pruner.after_step()});   // fine-tune; zeros stay zero
//
// PyTorch's torch.nn.utils.prune names and semantics, with two differences:
//   - a mask is one byte per weight and the weight itself is zeroed: there is no
//     second full-precision copy (PyTorch keeps `weight_orig` beside `weight_mask`);
//   - `amount` is always the *total* sparsity the parameter ends with: pruning a
//     parameter at 50% to 0.75 removes another quarter of it, not 75% of what is left.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/generator.h"
#include "nn/module.h"
#include "nn/safetensors.h"

namespace minidl::nn {
class Optimizer;
class Trainer;
}  // namespace minidl::nn

namespace minidl::compress {

// How much to prune, as PyTorch's `amount`: a fraction of the elements in [0, 1]
// (rounded to the nearest count), or an exact number of elements.
class Amount {
 public:
  static Amount fraction(double f) { return Amount(f, false); }
  static Amount count(int64_t n) { return Amount(static_cast<double>(n), true); }
  // Elements to prune out of n; throws naming `op` and `what` for a fraction
  // outside [0, 1] or a count that is negative or larger than n.
  int64_t of(const char* op, const std::string& what, int64_t n) const;
  nlohmann::json to_json() const;

 private:
  Amount(double v, bool is_count) : value_(v), is_count_(is_count) {}
  double value_;
  bool is_count_;
};

// Zhu & Gupta's gradual schedule ("To prune, or not to prune", 2017): the
// sparsity rises from `initial` to `final` between begin_step and end_step as
//   s(t) = final + (initial − final) · (1 − (t − begin) / (end − begin))³,
// pruning every `every` steps — fast at first, while many weights are
// redundant, then slowly, so fine-tuning can recover between steps.
struct AgpSchedule {
  double initial = 0, final = 0.9;
  int64_t begin_step = 0, end_step = 1000, every = 100;
  double sparsity_at(int64_t step) const;  // initial before begin, final after end
  nlohmann::json to_json() const;
};

// The masks of one model's pruned parameters, by dotted name ("1.weight"): bool
// tensors of the parameter's shape, true where the weight is kept.
class Pruner {
 public:
  explicit Pruner(nn::Module& model) : model_(model) {}

  // The smallest |w| go, ties to the lower index; weights already pruned stay
  // pruned and count toward the amount.
  Pruner& l1_unstructured(const std::string& param, Amount amount);
  // Weights drawn uniformly from those still kept.
  Pruner& random_unstructured(const std::string& param, Amount amount, Generator& gen);
  // One threshold across all the listed parameters: the globally smallest |w| go,
  // so layers end at different sparsities. The amount is of their total size.
  Pruner& global_unstructured(const std::vector<std::string>& params, Amount amount);
  // Makes the pruning of `param` permanent (PyTorch's prune.remove): its zeros
  // stay, its mask is dropped and fine-tuning may move those weights again.
  Pruner& remove(const std::string& param);

  // w := w ⊙ mask for every mask. With an optimizer, its per-parameter state
  // (momentum, Adam's moments) is masked too, so the next step cannot revive a
  // pruned weight from a moment it accumulated before.
  void apply() const;
  void apply(nn::Optimizer& optimizer) const;
  // For nn::TrainHooks::after_step: apply(trainer.optimizer()) after every step.
  std::function<void(nn::Trainer&, int64_t)> after_step() const;
  // For nn::TrainHooks::after_step, pruning gradually: at begin_step and every
  // `every` steps after it until end_step, prunes `params` (one global
  // threshold, or each on its own with global false) to schedule.sparsity_at(step),
  // then applies the masks after every step. The recipe records the schedule once.
  std::function<void(nn::Trainer&, int64_t)> gradual(const std::vector<std::string>& params,
                                                     const AgpSchedule& schedule, bool global = true);

  const std::map<std::string, Tensor>& masks() const { return masks_; }
  // The fraction of the parameter's values that are zero (pruned or not).
  double sparsity(const std::string& param) const;
  // What was done, in order: [{"method", "amount", "params"}], for a checkpoint's metadata.
  const nlohmann::json& recipe() const { return recipe_; }

  // A pruned checkpoint: the masks as bool tensors "pruning.mask.<param>" and the
  // recipe as metadata "pruning", beside the model (Trainer::save(path, tensors,
  // metadata)). load_model reads such a file as the model alone; load_from
  // restores the masks and recipe onto the model it loaded, checking every mask
  // against its parameter (shape, dtype, and zeros where it prunes), with errors
  // naming the file and the tensor.
  nn::StateDict checkpoint_tensors() const;
  nn::Metadata checkpoint_metadata() const;
  void load_from(const nn::SafeTensors& file, const std::string& name);

 private:
  Tensor parameter(const char* op, const std::string& name) const;
  void prune_by_magnitude(const char* method, const std::vector<std::string>& params, Amount amount);
  // Prunes `extra` more weights of `params` (whose current masks are `keep`), the
  // first `extra` of `order`: positions in their flattened concatenation.
  void prune_more(const std::vector<std::string>& params, std::vector<std::vector<bool>> keep, int64_t extra,
                  const std::vector<int64_t>& order);
  nn::Module& model_;
  std::map<std::string, Tensor> masks_;
  nlohmann::json recipe_ = nlohmann::json::array();
};

}  // namespace minidl::compress
