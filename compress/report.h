// compress/report.h — per-layer sparsity: what pruning left, and what it could save.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/module.h"

namespace minidl::compress {

// One Linear or Conv2d (or their sparse twins' dense originals).
struct LayerSparsity {
  std::string path, layer;   // "3", "Conv2d(...)"
  Shape shape;               // the weight's
  int64_t numel = 0, nnz = 0;
  double sparsity = 0;       // 1 − nnz / numel
  int64_t dense_bytes = 0;   // numel · 4
  int64_t csr_bytes = 0;     // values + 16- or 32-bit column indices + row pointers
  int64_t dense_macs = 0;    // multiply-adds per sample: weights × output positions (1 for a Linear)
  int64_t sparse_macs = 0;   // the same counting only non-zero weights
};

// Every Linear and Conv2d of `model`, in tree order; `example` (one or more
// samples) runs through it once to find each convolution's output size.
std::vector<LayerSparsity> sparsity_report(nn::Module& model, const Tensor& example);
nlohmann::json to_json(const std::vector<LayerSparsity>& report);

}  // namespace minidl::compress
