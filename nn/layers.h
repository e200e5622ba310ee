// nn/layers.h — the layers a classifier is built from.
//
// Default initialisations equal PyTorch's (each noted at its constructor), so a
// minidl model and a PyTorch one start from the same distribution. Every
// constructor takes the Generator to draw from; seeded runs are reproducible.
#pragma once

#include <array>

#include "core/check.h"
#include "core/generator.h"
#include "nn/module.h"
#include "ops/conv.h"

namespace minidl::nn {

// y = x Wᵀ + b. x (..., in) -> (..., out).
// Init (PyTorch): W and b ~ U(-1/√in, 1/√in) (kaiming_uniform with a = √5).
//
// `final`: a compressed variant (masked, sparse, int8) is its own Module, built
// from a Linear and swapped in with Module::replace, never a subclass that would
// inherit the dense forward.
class Linear final : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  // The activation fused into the GEMM's epilogue (Sequential uses it for Linear, ReLU).
  Tensor forward_fused(const Tensor& x, Activation act) override;
  std::string describe() const override;
  nlohmann::json hyper_parameters() const override;
  Tensor weight, bias;  // (out, in), (out)
  int64_t in_features, out_features;
};

// x (N, C, H, W) -> (N, O, Ho, Wo).
// Init (PyTorch): W and b ~ U(-1/√fan_in, 1/√fan_in), fan_in = C/groups · kh · kw.
class Conv2d final : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Conv2dOptions options = {},
         bool bias = true, Generator& gen = default_generator());
  Tensor forward(const Tensor& x) override;
  // The activation fused into the pass that writes y (Sequential: Conv2d, ReLU).
  Tensor forward_fused(const Tensor& x, Activation act) override;
  std::string describe() const override;
  nlohmann::json hyper_parameters() const override;
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
  nlohmann::json hyper_parameters() const override;
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
  nlohmann::json hyper_parameters() const override { return {{"type", "ReLU"}}; }
};

class GELU : public Module {
 public:
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "GELU()"; }
  nlohmann::json hyper_parameters() const override { return {{"type", "GELU"}}; }
};

// Active only in training mode; draws its masks from its own generator.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5, uint64_t seed = 0);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  nlohmann::json hyper_parameters() const override;
  double p;
  uint64_t seed;
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
  nlohmann::json settings_json(const char* type) const;
};

class MaxPool2d : public Pool2dModule {
 public:
  explicit MaxPool2d(int64_t kernel, int64_t stride = 0, int64_t padding = 0) : Pool2dModule(kernel, stride, padding) {}
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "MaxPool2d(" + settings() + ")"; }
  nlohmann::json hyper_parameters() const override { return settings_json("MaxPool2d"); }
};

class AvgPool2d : public Pool2dModule {
 public:
  explicit AvgPool2d(int64_t kernel, int64_t stride = 0, int64_t padding = 0) : Pool2dModule(kernel, stride, padding) {}
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "AvgPool2d(" + settings() + ")"; }
  nlohmann::json hyper_parameters() const override { return settings_json("AvgPool2d"); }
};

class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(std::array<int64_t, 2> output_size) : output_size(output_size) {}
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  nlohmann::json hyper_parameters() const override {
    return {{"type", "AdaptiveAvgPool2d"}, {"output_size", output_size}};
  }
  std::array<int64_t, 2> output_size;
};

// (N, d1, d2, ...) -> (N, d1·d2·...)
class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x.flatten(1); }
  std::string describe() const override { return "Flatten()"; }
  nlohmann::json hyper_parameters() const override { return {{"type", "Flatten"}}; }
};

// Runs its children in order; they are named "0", "1", ... as in PyTorch. A layer
// directly followed by a ReLU is asked to fuse it (forward_fused): Linear and
// Conv2d apply the ReLU while they write their output — the same result, one pass
// over memory fewer forward and backward; a layer that declines runs unfused.
class Sequential : public Module {
 public:
  Sequential() = default;
  explicit Sequential(std::vector<ModulePtr> layers);
  Sequential& add(ModulePtr layer);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override { return "Sequential"; }
  nlohmann::json hyper_parameters() const override { return {{"type", "Sequential"}}; }
  size_t size() const { return children().size(); }
  const ModulePtr& operator[](size_t i) const { return children().at(i).second; }
};

// The ResNet basic block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)),
// 3×3 convolutions without bias; the shortcut is a 1×1 conv + BN when the shape
// changes (stride or channels), the identity otherwise.
//
// Its five children are looked up by name on every forward, so any of them can be
// replaced (Module::replace("3.conv1", ...)) or shrunk; the typed accessors are
// for code that knows they are still the dense layers.
class ResidualBlock : public Module {
 public:
  ResidualBlock(int64_t in_channels, int64_t out_channels, int64_t stride = 1, Generator& gen = default_generator());
  // From given children (a rebuilt or shrunk block; nn/spec.cpp uses it).
  ResidualBlock(ModulePtr conv1, ModulePtr bn1, ModulePtr conv2, ModulePtr bn2, std::shared_ptr<Sequential> shortcut);
  Tensor forward(const Tensor& x) override;
  std::string describe() const override;
  nlohmann::json hyper_parameters() const override { return {{"type", "ResidualBlock"}}; }
  std::shared_ptr<Conv2d> conv1() const { return typed<Conv2d>("conv1"); }
  std::shared_ptr<Conv2d> conv2() const { return typed<Conv2d>("conv2"); }
  std::shared_ptr<BatchNorm> bn1() const { return typed<BatchNorm>("bn1"); }
  std::shared_ptr<BatchNorm> bn2() const { return typed<BatchNorm>("bn2"); }
  std::shared_ptr<Sequential> shortcut() const { return typed<Sequential>("shortcut"); }  // empty: identity

 private:
  template <class M>
  std::shared_ptr<M> typed(const std::string& name) const {
    auto m = std::dynamic_pointer_cast<M>(child(name));
    MINIDL_CHECK(m != nullptr, "ResidualBlock: child '{}' is a {}, not the dense layer", name, child(name)->describe());
    return m;
  }
};

// make<Linear>(784, 512) — a shared_ptr, as Sequential and register_module take.
template <class M, class... Args>
std::shared_ptr<M> make(Args&&... args) {
  return std::make_shared<M>(std::forward<Args>(args)...);
}

}  // namespace minidl::nn
