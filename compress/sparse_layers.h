// compress/sparse_layers.h — inference layers with a sparse weight, and the
// conversion that puts them into a pruned model.
//
//   auto report = compress::to_sparse(*model, SparseFormat::csr());            // every pruned layer
//   auto report = compress::to_sparse(*model, SparseFormat::csr(), {.measure = true, .example = x});
//   for (const auto& r : report) fmt::print("{}: {} ({})\n", r.path, r.choice, r.reason);
//
// SparseLinear and SparseConv2d sit beside Linear and Conv2d (nn/layers.h); the
// conversion builds them from the dense layers and swaps them in place
// (Module::replace). Both fuse a following ReLU into their kernel's epilogue.
// They are inference layers: the sparse weight is not a trainable tensor
// (fine-tune the masked dense model, then convert).
#pragma once

#include <string>
#include <vector>

#include "compress/sparse.h"
#include "nn/layers.h"

namespace minidl::compress {

class SparseLinear final : public nn::Module {
 public:
  SparseLinear(const nn::Linear& dense, SparseFormat format);
  // On a GPU: CSR only (cuda/spmm.cu); the weight's arrays move with the layer.
  void check_device(const Device& device) const override;
  void moved_to(const Device& device) override { weight = weight.to(device); }
  Tensor forward(const Tensor& x) override;
  Tensor forward_fused(const Tensor& x, Activation act) override;
  std::string describe() const override;
  nlohmann::json hyper_parameters() const override;
  SparseMatrix weight;  // (out, in)
  Tensor bias;          // (out) or undefined
  int64_t in_features, out_features;
};

class SparseConv2d final : public nn::Module {
 public:
  // Refuses groups > 1, naming the layer's description.
  SparseConv2d(const nn::Conv2d& dense, SparseFormat format);
  void check_device(const Device& device) const override;  // the CPU only
  Tensor forward(const Tensor& x) override;
  Tensor forward_fused(const Tensor& x, Activation act) override;
  std::string describe() const override;
  nlohmann::json hyper_parameters() const override;
  SparseMatrix weight;  // (O, C·kh·kw)
  Tensor bias;          // (O) or undefined
  int64_t in_channels, out_channels, kernel_size;
  Conv2dOptions options;
};

struct ToSparseOptions {
  // Layers whose weight is less sparse than this stay dense.
  double min_sparsity = 1e-9;
  // Measure each candidate layer dense and sparse on its real input (the
  // activations `example` produces on the way through the model) and keep the
  // faster. Needs `example`; layers nested below the model's top level (inside a
  // ResidualBlock) are measured through the block's input.
  bool measure = false;
  Tensor example;
  int rounds = 15;  // interleaved dense/sparse timing rounds per layer
};

// What to_sparse did with one Linear or Conv2d.
struct SparseChoice {
  std::string path;       // "1", "3.conv1"
  std::string layer;      // "Linear(784, 512)"
  double sparsity = 0;    // of the dense weight
  std::string choice;     // "csr", "bsr4x4" or "dense"
  std::string reason;     // why: "89.9% sparse", "measured 2.31x faster", "bsr4x4 blocks do not divide ..."
  double dense_seconds = 0, sparse_seconds = 0;  // medians, when measured
};

// Replaces every Linear and Conv2d of `model` whose weight is sparse enough by
// its sparse twin in `format`, or (measure) only those measured faster. A layer
// the format cannot hold (a block that does not divide its shape, grouped
// convolution) stays dense, and the report says why. The model must be in eval
// mode on the CPU with f32 weights.
std::vector<SparseChoice> to_sparse(nn::Module& model, SparseFormat format, const ToSparseOptions& options = {});

}  // namespace minidl::compress
