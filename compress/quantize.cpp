#include "compress/quantize.h"

#include <cmath>
#include <limits>

#include "compress/probe.h"
#include "core/autograd.h"
#include "core/check.h"
#include "ops/factory.h"
#include "ops/matmul.h"

namespace minidl::compress {

// ---------------------------------------------------------------- QuantLinear

QuantLinear::QuantLinear(const nn::Linear& dense, bool per_channel)
    : in_features(dense.in_features), out_features(dense.out_features), per_channel(per_channel) {
  QuantizedWeight q = quantize_weight_int8(dense.weight.detach(), per_channel);
  weight = q.values, weight_scale = q.scale;
  if (dense.bias.defined()) bias = dense.bias.detach().clone();
  register_buffer("weight", weight);
  register_buffer("weight_scale", weight_scale);
  if (bias.defined()) register_buffer("bias", bias);
  after_load();
}

QuantLinear::QuantLinear(int64_t in, int64_t out, bool with_bias, bool per_channel)
    : in_features(in), out_features(out), per_channel(per_channel) {
  MINIDL_CHECK(in > 0 && out > 0, "QuantLinear: features must be positive, got ({}, {})", in, out);
  weight = zeros({out, in}, {.dtype = DType::int8});
  weight_scale = ones({per_channel ? out : 1});
  if (with_bias) bias = zeros({out});
  register_buffer("weight", weight);
  register_buffer("weight_scale", weight_scale);
  if (bias.defined()) register_buffer("bias", bias);
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

// ---------------------------------------------------------------- quantize_dynamic

namespace {
int64_t bytes_of(const Tensor& t) {
  return t.defined() ? t.numel() * static_cast<int64_t>(element_size(t.dtype())) : 0;
}
}  // namespace

bool is_quantized(nn::Module& model) {
  for (auto& [path, m] : model.named_modules())
    if (dynamic_cast<QuantLinear*>(m.get())) return true;
  return false;
}

std::vector<QuantLayerReport> quantize_dynamic(nn::Module& model, const QuantizeOptions& o) {
  NoGradGuard no_grad;
  MINIDL_CHECK(!is_quantized(model),
               "quantize: the model is already quantized (it holds int8 layers); quantize "
               "the f32 checkpoint instead");
  MINIDL_CHECK(!model.is_training(),
               "quantize: the model is in training mode; call eval() first (int8 layers are "
               "for inference)");
  std::vector<std::pair<std::string, nn::ModulePtr>> layers;
  for (auto& [path, m] : model.named_modules()) {
    auto* l = dynamic_cast<nn::Linear*>(m.get());
    if (!l) continue;
    MINIDL_CHECK(l->weight.dtype() == DType::f32 && l->weight.device().is_cpu(),
                 "quantize: {} ({}) is {} on {}; int8 quantization starts from f32 weights on the CPU", path,
                 m->describe(), l->weight.dtype(), l->weight.device());
    layers.emplace_back(path, m);
  }
  MINIDL_CHECK(!layers.empty(), "quantize: the model has no Linear layer to quantize");

  // Each layer's real input, from the f32 model, before anything is replaced.
  std::vector<std::shared_ptr<LayerProbe>> probes;
  if (o.calibration.defined()) probes = run_with_probes(model, layers, o.calibration);

  std::vector<QuantLayerReport> report;
  for (size_t i = 0; i < layers.size(); ++i) {
    auto& dense = dynamic_cast<nn::Linear&>(*layers[i].second);
    auto q = std::make_shared<QuantLinear>(dense, o.per_channel);
    QuantLayerReport r{.path = layers[i].first, .layer = dense.describe()};
    const float* s = q->weight_scale.data_ptr<float>();
    r.scale_min = *std::min_element(s, s + q->weight_scale.numel());
    r.scale_max = *std::max_element(s, s + q->weight_scale.numel());
    r.weight_sqnr_db = sqnr_db(dense.weight, q->dequantized_weight());
    r.output_sqnr_db = std::numeric_limits<double>::quiet_NaN();
    if (!probes.empty() && probes[i]->input.defined())
      r.output_sqnr_db = sqnr_db(dense.forward(probes[i]->input), q->forward(probes[i]->input));
    r.f32_bytes = bytes_of(dense.weight) + bytes_of(dense.bias);
    r.int8_bytes = bytes_of(q->weight) + bytes_of(q->weight_scale) + bytes_of(q->bias);
    report.push_back(r);
    model.replace(layers[i].first, q);
  }
  return report;
}

}  // namespace minidl::compress
