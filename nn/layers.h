// nn/layers.h — the layers a classifier is built from.
//
// Default initialisations equal PyTorch's (each noted at its constructor), so a
// minidl model and a PyTorch one start from the same distribution. Every
// constructor takes the Generator to draw from; seeded runs are reproducible.
#pragma once

#include <array>

#include "core/generator.h"
#include "nn/module.h"
#include "ops/conv.h"

namespace minidl::nn {

// y = x Wᵀ + b. x (..., in) -> (..., out).
// Init (PyTorch): W and b ~ U(-1/√in, 1/√in) (kaiming_uniform with a = √5).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  // forward followed by the activation, fused into the GEMM (Sequential uses it for Linear, ReLU).
  Tensor forward(const Tensor& x, Activation act);
  std::string describe() const override;
  Tensor weight, bias;  // (out, in), (out)
  int64_t in_features, out_features;
};

// x (N, C, H, W) -> (N, O, Ho, Wo).
// Init (PyTorch): W and b ~ U(-1/√fan_in, 1/√fan_in), fan_in = C/groups · kh · kw.
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Conv2dOptions options = {},
         bool bias = true, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  // forward followed by the activation, fused into the pass that writes y (Sequential: Conv2d, ReLU).
  Tensor forward(const Tensor& x, Activation act);
  std::string describe() const override;
  Tensor weight, bias;  // (O, C/groups, k, k), (O)
  int64_t in_channels, out_channels, kernel_size;
  Conv2dOptions options;
};

// Batch normalisation over (N, C) (1d) or (N, C, H, W) (2d) inputs.
// Init (PyTorch): weight 1, bias 0, running_mean 0, running_var 1.
class BatchNorm : public Module {
 public:
  BatchNorm(int64_t features, int expected_dims, double eps = 1e-5, double momentum = 0.1);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  Tensor weight, bias, running_mean, running_var;
  Tensor num_batches_tracked;  // int64 scalar, kept for PyTorch state_dict compatibility
  int64_t features;
  int expected_dims;
  double eps, momentum;
};
class BatchNorm1d : public BatchNorm {
 public:
  explicit BatchNorm1d(int64_t features, double eps = 1e-5, double momentum = 0.1) : BatchNorm(features, 2, eps, momentum) {}
};
class BatchNorm2d : public BatchNorm {
 public:
  explicit BatchNorm2d(int64_t features, double eps = 1e-5, double momentum = 0.1) : BatchNorm(features, 4, eps, momentum) {}
};

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "ReLU()"; }
};

class GELU : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "GELU()"; }
};

// Active only in training mode; draws its masks from its own generator.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, uint64_t seed = 0) : p(p), gen(seed) {}
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  double p;
  Generator gen;
};

// Square-window pooling settings shared by MaxPool2d and AvgPool2d; stride 0 means the kernel size.
class Pool2dModule : public Module {
 public:
  Pool2dModule(int64_t kernel, int64_t stride, int64_t padding)
      : kernel(kernel), stride(stride ? stride : kernel), padding(padding) {}
  int64_t kernel, stride, padding;

 protected:
  std::string settings() const;  // "kernel_size=2, stride=2, padding=0"
};

class MaxPool2d : public Pool2dModule {
 public:
  explicit MaxPool2d(int64_t kernel, int64_t stride = 0, int64_t padding = 0) : Pool2dModule(kernel, stride, padding) {}
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "MaxPool2d(" + settings() + ")"; }
};

class AvgPool2d : public Pool2dModule {
 public:
  explicit AvgPool2d(int64_t kernel, int64_t stride = 0, int64_t padding = 0) : Pool2dModule(kernel, stride, padding) {}
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "AvgPool2d(" + settings() + ")"; }
};

class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(std::array<int64_t, 2> output_size) : output_size(output_size) {}
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  std::array<int64_t, 2> output_size;
};

// (N, d1, d2, ...) -> (N, d1·d2·...)
class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x.flatten(1); }
  std::string describe() const override { return "Flatten()"; }
};

// Runs its children in order; they are named "0", "1", ... as in PyTorch.
// Runs its layers in order. A Linear or Conv2d directly followed by a ReLU runs as
// one fused op (the ReLU applied while the layer writes its output): the same
// result, one pass over memory fewer forward and backward.
class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<ModulePtr> layers);
  Sequential& add(ModulePtr layer);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "Sequential"; }
  size_t size() const { return layers_.size(); }
  const ModulePtr& operator[](size_t i) const { return layers_.at(i); }

 private:
  std::vector<ModulePtr> layers_;
};

// The ResNet basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)),
// 3×3 convolutions without bias; the shortcut is a 1×1 conv + BN when the shape
// changes (stride or channels), the identity otherwise.
class ResidualBlock : public Module {
 public:
  ResidualBlock(int64_t in_channels, int64_t out_channels, int64_t stride = 1, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<Sequential> shortcut;  // empty for the identity
  int64_t in_channels, out_channels, stride;
};

// make<Linear>(784, 512) — a shared_ptr, as Sequential and register_module take.
template <class M, class... Args>
std::shared_ptr<M> make(Args&&... args) {
  return std::make_shared<M>(std::forward<Args>(args)...);
}

}  // namespace minidl::nn
