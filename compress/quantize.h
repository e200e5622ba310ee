// compress/quantize.h — int8 dynamic quantization of a model's Linear layers.
//
//   auto report = compress::quantize_dynamic(*model, {.calibration = x});   // every Linear -> QuantLinear
//   for (const auto& r : report) fmt::print("{}: SQNR {:.1f} dB\n", r.path, r.output_sqnr_db);
//
// As torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8):
// weights become int8 once, ahead of time; each forward quantizes its input to
// u8 from that batch's range and runs an integer GEMM (ops/quant.h). Convolutions
// stay f32 (PyTorch's dynamic quantization has no conv either). QuantLinear sits
// beside Linear as its own Module and fuses a following ReLU into its epilogue;
// checkpoints hold its int8 weight and scales, and load_model rebuilds it.
#pragma once

#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/spec.h"
#include "ops/quant.h"

namespace minidl::compress {

class QuantLinear final : public nn::Module {
 public:
  // From a dense layer (weights quantized here).
  explicit QuantLinear(const nn::Linear& dense, bool per_channel = true);
  // Empty, for load_model to fill (nn/spec.h).
  QuantLinear(int64_t in_features, int64_t out_features, bool bias, bool per_channel);
  Tensor forward(const Tensor& x) override;
  Tensor forward_fused(const Tensor& x, Activation act) override;
  std::string describe() const override;
  nlohmann::json hyper_parameters() const override;
  // Re-packs the weight for the GEMM and checks it (values in [−127, 127], scales > 0).
  void after_load() override;
  // model->to(cuda): the buffers have moved; the weight is packed again for the
  // GPU's kernel (cuda/qgemm_kernels.cuh), or for the CPU's on the way back.
  void moved_to(const Device&) override { after_load(); }
  // What the int8 weight stands for, f32 (out, in).
  Tensor dequantized_weight() const { return dequantize_weight(weight, weight_scale); }
  // The weight as the int8 GEMM reads it (a compiled plan calls the GEMM itself).
  const Int8Weight& packed() const { return packed_; }

  Tensor weight;        // int8 (out, in)
  Tensor weight_scale;  // f32 (out), or (1) per tensor
  Tensor bias;          // f32 (out) or undefined
  int64_t in_features, out_features;
  bool per_channel;

 private:
  Int8Weight packed_;
};

// The spec builder for "QuantLinear" (nn/spec.cpp lists it with its own layers).
nn::ModulePtr build_quant_linear(const nn::SpecReader& r);

struct QuantizeOptions {
  bool per_channel = true;  // one scale per output channel; false: one per tensor
  // A batch of model inputs: with it, each layer's output error is measured on
  // the activations that really reach it.
  Tensor calibration;
};

// What quantize_dynamic did with one Linear.
struct QuantLayerReport {
  std::string path, layer;                // "1", "Linear(in_features=784, out_features=512, bias=True)"
  double scale_min = 0, scale_max = 0;    // of the weight's scales
  double weight_sqnr_db = 0;              // the dequantized weight against the f32 one
  double output_sqnr_db = 0;              // the layer's output on the calibration input (NaN without one)
  int64_t f32_bytes = 0, int8_bytes = 0;  // the layer's tensors before and after
};

// Replaces every Linear of `model` (eval mode, f32 on the CPU) by a QuantLinear.
// Refuses a model that already holds int8 layers, and one with no Linear.
std::vector<QuantLayerReport> quantize_dynamic(nn::Module& model, const QuantizeOptions& options = {});

// Whether any layer of the tree is a QuantLinear.
bool is_quantized(nn::Module& model);

}  // namespace minidl::compress
