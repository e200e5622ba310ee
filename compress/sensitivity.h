// compress/sensitivity.h — which layers can take how much pruning?
//
// Sensitivity analysis prunes one layer at a time (L1 magnitude, the others
// left dense) to each sparsity of a grid and measures the model's accuracy, so
// a global or per-layer target can be chosen from evidence: a layer whose
// accuracy holds to 95% takes a high amount, one that drops at 50% a low one.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/module.h"

namespace minidl::compress {

struct SensitivityPoint {
  std::string param;  // "1.weight"
  double sparsity = 0, accuracy = 0;
};

// For each parameter and each sparsity in `grid` (fractions in [0, 1]): prune
// that parameter alone to the sparsity, call `accuracy(model)`, and put the
// weights back exactly as they were. The model is unchanged afterwards.
std::vector<SensitivityPoint> sensitivity(nn::Module& model, const std::vector<std::string>& params,
                                          const std::vector<double>& grid,
                                          const std::function<double(nn::Module&)>& accuracy);
nlohmann::json to_json(const std::vector<SensitivityPoint>& points);

}  // namespace minidl::compress
