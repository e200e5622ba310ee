#include "nn/layers.h"

#include <cmath>

#include "core/autograd.h"
#include "core/check.h"
#include "ops/elementwise.h"
#include "ops/factory.h"
#include "ops/matmul.h"
#include "ops/norm.h"
#include "ops/pool.h"

namespace minidl::nn {

namespace {
// U(-bound, bound), as a fresh leaf.
Tensor uniform(const Shape& shape, double bound, Generator& gen) {
  NoGradGuard no_grad;
  return (rand(shape, {}, gen) * (2 * bound) - bound).detach();
}
}  // namespace

// ---------------------------------------------------------------- Linear

Linear::Linear(int64_t in, int64_t out, bool with_bias, Generator& gen) : in_features(in), out_features(out) {
  MINIDL_CHECK(in > 0 && out > 0, "Linear: features must be positive, got ({}, {})", in, out);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  weight = uniform({out, in}, bound, gen);
  register_parameter("weight", weight);
  if (with_bias) {
    bias = uniform({out}, bound, gen);
    register_parameter("bias", bias);
  }
}

Tensor Linear::forward(const Tensor& x) { return linear(x, weight, bias); }
Tensor Linear::forward_fused(const Tensor& x, Activation act) { return linear(x, weight, bias, act); }
std::string Linear::describe() const {
  return fmt::format("Linear(in_features={}, out_features={}, bias={})", in_features, out_features, bias.defined());
}
nlohmann::json Linear::hyper_parameters() const {
  return {{"type", "Linear"}, {"in_features", in_features}, {"out_features", out_features}, {"bias", bias.defined()}};
}

// ---------------------------------------------------------------- Conv2d

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, Conv2dOptions o, bool with_bias, Generator& gen)
    : in_channels(in), out_channels(out), kernel_size(k), options(o) {
  MINIDL_CHECK(in > 0 && out > 0 && k > 0 && o.groups > 0 && in % o.groups == 0 && out % o.groups == 0,
               "Conv2d: invalid channels {} -> {}, kernel {}, groups {}", in, out, k, o.groups);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in / o.groups * k * k));
  weight = uniform({out, in / o.groups, k, k}, bound, gen);
  register_parameter("weight", weight);
  if (with_bias) {
    bias = uniform({out}, bound, gen);
    register_parameter("bias", bias);
  }
}

Tensor Conv2d::forward(const Tensor& x) { return conv2d(x, weight, bias, options); }
Tensor Conv2d::forward_fused(const Tensor& x, Activation act) { return conv2d(x, weight, bias, options, act); }
nlohmann::json Conv2d::hyper_parameters() const {
  return {{"type", "Conv2d"},           {"in_channels", in_channels}, {"out_channels", out_channels},
          {"kernel_size", kernel_size}, {"stride", options.stride},   {"padding", options.padding},
          {"dilation", options.dilation}, {"groups", options.groups}, {"bias", bias.defined()}};
}
std::string Conv2d::describe() const {
  return fmt::format("Conv2d({}, {}, kernel_size={}, stride={}, padding={}, groups={}, bias={})", in_channels,
                     out_channels, kernel_size, options.stride, options.padding, options.groups, bias.defined());
}

// ---------------------------------------------------------------- BatchNorm

// Checked here, not only in the op: a bad p is the caller's mistake the moment
// the layer is built, not at its first training step.
Dropout::Dropout(double p, uint64_t seed) : p(p), seed(seed), gen(seed) {
  MINIDL_CHECK(p >= 0 && p <= 1, "Dropout: probability must be in [0, 1], got {}", p);
}

BatchNorm::BatchNorm(int64_t n, int dims, double eps, double momentum)
    : features(n), expected_dims(dims), eps(eps), momentum(momentum) {
  MINIDL_CHECK(n > 0 && eps > 0 && momentum >= 0 && momentum <= 1,
               "BatchNorm: features ({}) and eps ({}) must be positive and momentum ({}) in [0, 1]", n, eps, momentum);
  weight = ones({n});
  bias = zeros({n});
  running_mean = zeros({n});
  running_var = ones({n});
  num_batches_tracked = zeros({}, {.dtype = DType::int64});
  register_parameter("weight", weight);
  register_parameter("bias", bias);
  register_buffer("running_mean", running_mean);
  register_buffer("running_var", running_var);
  register_buffer("num_batches_tracked", num_batches_tracked);
}

Tensor BatchNorm::forward(const Tensor& x) {
  MINIDL_CHECK(x.dim() == expected_dims, "{}: expected a {}-d input, got {}", describe(), expected_dims, x.shape());
  if (is_training()) {
    NoGradGuard no_grad;
    num_batches_tracked.copy_(add(num_batches_tracked, 1.0));
  }
  return batch_norm(x, running_mean, running_var, weight, bias, is_training(), momentum, eps);
}
nlohmann::json BatchNorm::hyper_parameters() const {
  return {{"type", expected_dims == 2 ? "BatchNorm1d" : "BatchNorm2d"},
          {"features", features},
          {"eps", eps},
          {"momentum", momentum}};
}
std::string BatchNorm::describe() const {
  return fmt::format("BatchNorm{}d({}, eps={}, momentum={})", expected_dims == 2 ? 1 : 2, features, eps, momentum);
}

// ---------------------------------------------------------------- activations, dropout, pooling

Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor GELU::forward(const Tensor& x) { return gelu(x); }

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p, is_training(), gen); }
std::string Dropout::describe() const { return fmt::format("Dropout(p={})", p); }
nlohmann::json Dropout::hyper_parameters() const { return {{"type", "Dropout"}, {"p", p}, {"seed", seed}}; }

std::string Pool2dModule::settings() const {
  return fmt::format("kernel_size={}, stride={}, padding={}", kernel, stride, padding);
}
nlohmann::json Pool2dModule::settings_json(const char* type) const {
  return {{"type", type}, {"kernel_size", kernel}, {"stride", stride}, {"padding", padding}};
}
Tensor MaxPool2d::forward(const Tensor& x) { return max_pool2d(x, {kernel, kernel}, {stride, stride}, {padding, padding}); }
Tensor AvgPool2d::forward(const Tensor& x) { return avg_pool2d(x, {kernel, kernel}, {stride, stride}, {padding, padding}); }

Tensor AdaptiveAvgPool2d::forward(const Tensor& x) { return adaptive_avg_pool2d(x, output_size); }
std::string AdaptiveAvgPool2d::describe() const { return fmt::format("AdaptiveAvgPool2d(output_size={})", output_size); }

// ---------------------------------------------------------------- Sequential

Sequential::Sequential(std::vector<ModulePtr> layers) {
  for (auto& l : layers) add(std::move(l));
}

Sequential& Sequential::add(ModulePtr layer) {
  MINIDL_CHECK(layer != nullptr, "Sequential: cannot add a null layer");
  register_module(std::to_string(children().size()), std::move(layer));
  return *this;
}

Tensor Sequential::forward(const Tensor& x) {
  const auto& layers = children();
  Tensor h = x;
  for (size_t i = 0; i < layers.size(); ++i) {
    Module& layer = *layers[i].second;
    const bool relu_next = i + 1 < layers.size() && dynamic_cast<const ReLU*>(layers[i + 1].second.get()) != nullptr;
    if (relu_next) {
      if (Tensor fused = layer.forward_fused(h, Activation::relu); fused.defined()) {
        h = std::move(fused);
        ++i;  // the ReLU is done
        continue;
      }
    }
    h = layer.forward(h);
  }
  return h;
}

// ---------------------------------------------------------------- ResidualBlock

ResidualBlock::ResidualBlock(int64_t in, int64_t out, int64_t s, Generator& gen)
{
  register_module("conv1", make<Conv2d>(in, out, 3, Conv2dOptions{.stride = {s, s}, .padding = {1, 1}}, false, gen));
  register_module("bn1", make<BatchNorm2d>(out));
  register_module("conv2", make<Conv2d>(out, out, 3, Conv2dOptions{.padding = {1, 1}}, false, gen));
  register_module("bn2", make<BatchNorm2d>(out));
  auto shortcut = register_module("shortcut", make<Sequential>());
  if (s != 1 || in != out) {
    shortcut->add(make<Conv2d>(in, out, 1, Conv2dOptions{.stride = {s, s}}, false, gen));
    shortcut->add(make<BatchNorm2d>(out));
  }
}

ResidualBlock::ResidualBlock(ModulePtr conv1, ModulePtr bn1, ModulePtr conv2, ModulePtr bn2,
                             std::shared_ptr<Sequential> shortcut) {
  register_module("conv1", std::move(conv1));
  register_module("bn1", std::move(bn1));
  register_module("conv2", std::move(conv2));
  register_module("bn2", std::move(bn2));
  register_module("shortcut", std::move(shortcut));
}

Tensor ResidualBlock::forward(const Tensor& x) {
  // children() in registration order: conv1, bn1, conv2, bn2, shortcut.
  const auto& c = children();
  Tensor h = relu(c[1].second->forward(c[0].second->forward(x)));
  h = c[3].second->forward(c[2].second->forward(h));
  return relu(add(h, c[4].second->forward(x)));
}
std::string ResidualBlock::describe() const {
  const auto* c1 = dynamic_cast<const Conv2d*>(child("conv1").get());
  if (!c1) return "ResidualBlock";
  return fmt::format("ResidualBlock({}, {}, stride={})", c1->in_channels, c1->out_channels, c1->options.stride[0]);
}

}  // namespace minidl::nn
