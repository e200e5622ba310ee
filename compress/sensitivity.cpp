#include "compress/sensitivity.h"

#include "compress/prune.h"
#include "core/autograd.h"
#include "core/check.h"

namespace minidl::compress {

std::vector<SensitivityPoint> sensitivity(nn::Module& model, const std::vector<std::string>& params,
                                          const std::vector<double>& grid,
                                          const std::function<double(nn::Module&)>& accuracy) {
  for (double s : grid) MINIDL_CHECK(s >= 0 && s <= 1, "sensitivity: sparsity {} is outside [0, 1]", s);
  const nn::StateDict state = model.state_dict();
  for (const std::string& p : params)
    MINIDL_CHECK(state.count(p), "sensitivity: the model has no parameter '{}'", p);
  std::vector<SensitivityPoint> points;
  for (const std::string& p : params) {
    const Tensor original = state.at(p).detach().clone();
    for (double s : grid) {
      {
        Pruner pruner(model);
        pruner.l1_unstructured(p, Amount::fraction(s));
      }
      points.push_back({p, s, accuracy(model)});
      NoGradGuard no_grad;
      model.state_dict().at(p).copy_(original);  // exactly as it was
    }
  }
  return points;
}

nlohmann::json to_json(const std::vector<SensitivityPoint>& points) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& p : points) j.push_back({{"param", p.param}, {"sparsity", p.sparsity}, {"accuracy", p.accuracy}});
  return j;
}

}  // namespace minidl::compress
