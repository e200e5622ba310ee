// compress/probe.h (internal) — what each layer of a model sees when an example
// runs through it: its input and its output.
//
// A probe stands in for a layer (Module::replace) while the example runs, keeps
// what passes through, and the layers go back afterwards, also when the forward
// throws. to_sparse uses the inputs to time layers on real activations; the
// sparsity report uses the outputs' sizes to count a convolution's MACs.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"

namespace minidl::compress {

class LayerProbe final : public nn::Module {
 public:
  explicit LayerProbe(nn::ModulePtr inner) : inner_(std::move(inner)) {}
  Tensor forward(const Tensor& x) override { return keep(x, inner_->forward(x)); }
  Tensor forward_fused(const Tensor& x, Activation act) override { return keep(x, inner_->forward_fused(x, act)); }
  std::string describe() const override { return inner_->describe(); }
  nlohmann::json hyper_parameters() const override { return inner_->hyper_parameters(); }
  Tensor input, output;

 private:
  Tensor keep(const Tensor& x, Tensor y) {
    input = x;
    if (y.defined()) output = y;
    return y;
  }
  nn::ModulePtr inner_;
};

// Runs `example` through `model` with probes in place of `layers` ((path,
// module) pairs of the model) and returns them, one per layer, in order.
inline std::vector<std::shared_ptr<LayerProbe>> run_with_probes(
    nn::Module& model, const std::vector<std::pair<std::string, nn::ModulePtr>>& layers, const Tensor& example) {
  std::vector<std::shared_ptr<LayerProbe>> probes;
  for (const auto& [path, m] : layers) {
    probes.push_back(std::make_shared<LayerProbe>(m));
    model.replace(path, probes.back());
  }
  auto restore = [&] {
    for (const auto& [path, m] : layers) model.replace(path, m);
  };
  try {
    model.forward(example);
  } catch (...) {
    restore();
    throw;
  }
  restore();
  return probes;
}

}  // namespace minidl::compress
