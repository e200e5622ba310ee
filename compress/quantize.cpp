#include "compress/quantize.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "compress/probe.h"
#include "core/autograd.h"
#include "core/check.h"
#include "ops/factory.h"
#include "ops/matmul.h"

namespace minidl::compress {

// ---------------------------------------------------------------- Int8Layer

void Int8Layer::hold(QuantizedWeight q, const Tensor& b) {
  weight = q.values, weight_scale = q.scale;
  if (b.defined()) bias = b.detach().clone();
  register_buffer("weight", weight);
  register_buffer("weight_scale", weight_scale);
  if (bias.defined()) register_buffer("bias", bias);
}

namespace {
// An empty int8 weight of `shape` for load_model to fill: zeros, scales of 1.
QuantizedWeight empty_int8(const Shape& shape, bool per_channel) {
  return {zeros(shape, {.dtype = DType::int8}), ones({per_channel ? shape[0] : 1})};
}
}  // namespace

// ---------------------------------------------------------------- QuantLinear

QuantLinear::QuantLinear(const nn::Linear& dense, bool per_channel)
    : Int8Layer(per_channel), in_features(dense.in_features), out_features(dense.out_features) {
  hold(quantize_weight_int8(dense.weight.detach(), per_channel), dense.bias);
  after_load();
}

QuantLinear::QuantLinear(int64_t in, int64_t out, bool with_bias, bool per_channel)
    : Int8Layer(per_channel), in_features(in), out_features(out) {
  MINIDL_CHECK(in > 0 && out > 0, "QuantLinear: features must be positive, got ({}, {})", in, out);
  hold(empty_int8({out, in}, per_channel), with_bias ? zeros({out}) : Tensor());
  after_load();
}

void QuantLinear::after_load() { packed_ = pack_int8_weight(weight, weight_scale); }

Tensor QuantLinear::forward(const Tensor& x) { return quantized_linear(x, packed_, bias); }
Tensor QuantLinear::forward_fused(const Tensor& x, Activation act) { return quantized_linear(x, packed_, bias, act); }

std::string QuantLinear::describe() const {
  return fmt::format("QuantLinear(in_features={}, out_features={}, bias={}, int8 {})", in_features, out_features,
                     bias.defined(), per_channel ? "per channel" : "per tensor");
}

nlohmann::json QuantLinear::hyper_parameters() const {
  return {{"type", "QuantLinear"},
          {"in_features", in_features},
          {"out_features", out_features},
          {"bias", bias.defined()},
          {"per_channel", per_channel}};
}

nn::ModulePtr build_quant_linear(const nn::SpecReader& r) {
  if (r.has_children()) r.fail_here("this layer type has no children");
  constexpr int64_t kMax = int64_t{1} << 20;
  const int64_t in = r.integer("in_features", 1, kMax), out = r.integer("out_features", 1, kMax);
  const bool bias = r.boolean("bias"), per_channel = r.boolean("per_channel");
  r.reserve(in * out / 4 + 2 * out + 1);  // int8 values: a quarter of an f32 element each
  return std::make_shared<QuantLinear>(in, out, bias, per_channel);
}

// ---------------------------------------------------------------- QuantConv2d

QuantConv2d::QuantConv2d(const nn::Conv2d& dense, bool per_channel)
    : Int8Layer(per_channel),
      in_channels(dense.in_channels),
      out_channels(dense.out_channels),
      kernel_size(dense.kernel_size),
      options(dense.options) {
  MINIDL_CHECK(options.groups == 1, "QuantConv2d: {} has groups={}; the int8 convolution takes groups = 1",
               dense.describe(), options.groups);
  hold(quantize_weight_int8(dense.weight.detach(), per_channel), dense.bias);
  after_load();
}

QuantConv2d::QuantConv2d(int64_t in, int64_t out, int64_t k, Conv2dOptions o, bool with_bias, bool per_channel)
    : Int8Layer(per_channel), in_channels(in), out_channels(out), kernel_size(k), options(o) {
  MINIDL_CHECK(in > 0 && out > 0 && k > 0 && o.groups == 1,
               "QuantConv2d: invalid channels {} -> {}, kernel {}, groups {} (the int8 convolution takes groups = 1)",
               in, out, k, o.groups);
  hold(empty_int8({out, in, k, k}, per_channel), with_bias ? zeros({out}) : Tensor());
  after_load();
}

void QuantConv2d::check_device(const Device& device) const {
  MINIDL_CHECK(device.is_cpu(),
               "{}: the int8 convolution runs on the CPU only, so this model cannot move to {}; keep it on the CPU, "
               "or quantize only its Linear layers (quantize without convolutions) for the GPU",
               describe(), device);
}

void QuantConv2d::after_load() { packed_ = pack_int8_conv_weight(weight, weight_scale); }

Tensor QuantConv2d::forward(const Tensor& x) { return quantized_conv2d(x, packed_, bias, options); }
Tensor QuantConv2d::forward_fused(const Tensor& x, Activation act) {
  return quantized_conv2d(x, packed_, bias, options, act);
}

std::string QuantConv2d::describe() const {
  return fmt::format("QuantConv2d({}, {}, kernel_size={}, stride={}, padding={}, bias={}, int8 {})", in_channels,
                     out_channels, kernel_size, options.stride, options.padding, bias.defined(),
                     per_channel ? "per channel" : "per tensor");
}

nlohmann::json QuantConv2d::hyper_parameters() const {
  return {{"type", "QuantConv2d"},        {"in_channels", in_channels}, {"out_channels", out_channels},
          {"kernel_size", kernel_size},   {"stride", options.stride},   {"padding", options.padding},
          {"dilation", options.dilation}, {"bias", bias.defined()},     {"per_channel", per_channel}};
}

nn::ModulePtr build_quant_conv2d(const nn::SpecReader& r) {
  if (r.has_children()) r.fail_here("this layer type has no children");
  constexpr int64_t kMax = int64_t{1} << 20, kMaxKernel = 64;  // as Conv2d's spec (nn/spec.cpp)
  const int64_t in = r.integer("in_channels", 1, kMax), out = r.integer("out_channels", 1, kMax);
  const int64_t k = r.integer("kernel_size", 1, kMaxKernel);
  const Conv2dOptions o{.stride = r.pair("stride", 1, kMaxKernel),
                        .padding = r.pair("padding", 0, kMaxKernel),
                        .dilation = r.pair("dilation", 1, kMaxKernel)};
  const bool bias = r.boolean("bias"), per_channel = r.boolean("per_channel");
  r.reserve(out * in * k * k / 4 + 2 * out + 1);  // int8 values: a quarter of an f32 element each
  return std::make_shared<QuantConv2d>(in, out, k, o, bias, per_channel);
}

// ---------------------------------------------------------------- quantize_dynamic

namespace {
int64_t bytes_of(const Tensor& t) {
  return t.defined() ? t.numel() * static_cast<int64_t>(element_size(t.dtype())) : 0;
}
}  // namespace

bool is_quantized(nn::Module& model) {
  for (auto& [path, m] : model.named_modules())
    if (dynamic_cast<QuantLinear*>(m.get()) || dynamic_cast<QuantConv2d*>(m.get())) return true;
  return false;
}

namespace {
// Why a convolution stays f32 under quantize_dynamic, or "" when it becomes int8.
std::string conv_kept_f32(const nn::Conv2d& c) {
  if (c.options.groups != 1) return fmt::format("groups={}: the int8 convolution takes groups = 1", c.options.groups);
  const int64_t patch = c.in_channels * c.kernel_size * c.kernel_size;
  if (patch < kMinInt8ConvPatch)
    return fmt::format("a patch of {} values: its f32 output costs more than its arithmetic (int8 pays from {})", patch,
                       kMinInt8ConvPatch);
  return "";
}
}  // namespace

std::vector<QuantLayerReport> quantize_dynamic(nn::Module& model, const QuantizeOptions& o) {
  NoGradGuard no_grad;
  MINIDL_CHECK(!is_quantized(model),
               "quantize: the model is already quantized (it holds int8 layers); quantize "
               "the f32 checkpoint instead");
  MINIDL_CHECK(!model.is_training(),
               "quantize: the model is in training mode; call eval() first (int8 layers are "
               "for inference)");
  std::vector<std::pair<std::string, nn::ModulePtr>> layers;
  std::vector<QuantLayerReport> kept;  // convolutions left f32
  for (auto& [path, m] : model.named_modules()) {
    auto* l = dynamic_cast<nn::Linear*>(m.get());
    auto* c = o.convolutions ? dynamic_cast<nn::Conv2d*>(m.get()) : nullptr;
    if (!l && !c) continue;
    const Tensor& w = l ? l->weight : c->weight;
    MINIDL_CHECK(w.dtype() == DType::f32 && w.device().is_cpu(),
                 "quantize: {} ({}) is {} on {}; int8 quantization starts from f32 weights on the CPU", path,
                 m->describe(), w.dtype(), w.device());
    if (std::string why = c ? conv_kept_f32(*c) : ""; !why.empty()) {
      kept.push_back({.path = path, .layer = c->describe(), .kept_f32 = std::move(why)});
      continue;
    }
    layers.emplace_back(path, m);
  }
  MINIDL_CHECK(!layers.empty(), "quantize: the model has no {} to quantize",
               o.convolutions ? "Linear layer, nor a convolution the int8 one takes," : "Linear layer");

  // Each layer's real input, from the f32 model, before anything is replaced.
  std::vector<std::shared_ptr<LayerProbe>> probes;
  if (o.calibration.defined()) probes = run_with_probes(model, layers, o.calibration);

  std::vector<QuantLayerReport> report;
  for (size_t i = 0; i < layers.size(); ++i) {
    nn::Module& dense = *layers[i].second;
    std::shared_ptr<Int8Layer> q;
    Tensor dense_weight, bias;
    if (auto* l = dynamic_cast<nn::Linear*>(&dense)) {
      q = std::make_shared<QuantLinear>(*l, o.per_channel), dense_weight = l->weight, bias = l->bias;
    } else {
      auto& c = dynamic_cast<nn::Conv2d&>(dense);
      q = std::make_shared<QuantConv2d>(c, o.per_channel), dense_weight = c.weight, bias = c.bias;
    }
    QuantLayerReport r{.path = layers[i].first, .layer = dense.describe(), .kept_f32 = ""};
    const float* s = q->weight_scale.data_ptr<float>();
    r.scale_min = *std::min_element(s, s + q->weight_scale.numel());
    r.scale_max = *std::max_element(s, s + q->weight_scale.numel());
    r.weight_sqnr_db = sqnr_db(dense_weight, q->dequantized_weight());
    r.output_sqnr_db = std::numeric_limits<double>::quiet_NaN();
    if (!probes.empty() && probes[i]->input.defined())
      r.output_sqnr_db = sqnr_db(dense.forward(probes[i]->input), q->forward(probes[i]->input));
    r.f32_bytes = bytes_of(dense_weight) + bytes_of(bias);
    r.int8_bytes = bytes_of(q->weight) + bytes_of(q->weight_scale) + bytes_of(bias);
    report.push_back(r);
    model.replace(layers[i].first, q);
  }
  report.insert(report.end(), kept.begin(), kept.end());
  return report;
}

}  // namespace minidl::compress
