// compress/quantize.h — int8 dynamic quantization of a model's Linear layers,
// and of its convolutions when asked.
//
//   auto report = compress::quantize_dynamic(*model, {.calibration = x});   // every Linear -> QuantLinear
//   for (const auto& r : report) fmt::print("{}: SQNR {:.1f} dB\n", r.path, r.output_sqnr_db);
//
// As torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8):
// weights become int8 once, ahead of time; each forward quantizes its input to
// u8 from that batch's range and runs an integer GEMM (ops/quant.h). QuantLinear
// sits beside Linear as its own Module and fuses a following ReLU into its
// epilogue; checkpoints hold its int8 weight and scales, and load_model rebuilds it.
//
// PyTorch's dynamic quantization leaves convolutions in f32. minidl's can take
// them too ({.convolutions = true}): QuantConv2d quantizes its input the same
// way and runs the int8 convolution (ops/cpu/qconv.cpp), on the CPU. Its output
// stays f32, so a convolution gains only where its arithmetic, not its output,
// is the cost: one with a short patch (a first layer's C·kh·kw = 9) stays f32.
#pragma once

#include <string>
#include <vector>

#include "nn/layers.h"
#include "nn/spec.h"
#include "ops/quant.h"

namespace minidl::compress {

// What QuantLinear and QuantConv2d hold alike: an int8 weight, its f32 scales
// and an f32 bias, registered as buffers (what their checkpoints store).
class Int8Layer : public nn::Module {
 public:
  // What the int8 weight stands for, f32 in the weight's shape.
  Tensor dequantized_weight() const { return dequantize_weight(weight, weight_scale); }

  Tensor weight;        // int8 (out, in) or (out, in, k, k)
  Tensor weight_scale;  // f32 (out), or (1) per tensor
  Tensor bias;          // f32 (out) or undefined
  bool per_channel;

 protected:
  explicit Int8Layer(bool per_channel) : per_channel(per_channel) {}
  // Takes q (quantized from a dense layer, or an empty one for load_model to
  // fill) and the bias (copied), and registers the three.
  void hold(QuantizedWeight q, const Tensor& bias);
};

class QuantLinear final : public Int8Layer {
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
  // The weight as the int8 GEMM reads it (a compiled plan calls the GEMM itself).
  const Int8Weight& packed() const { return packed_; }

  int64_t in_features, out_features;

 private:
  Int8Weight packed_;
};

// An int8 Conv2d (groups = 1), as QuantLinear is an int8 Linear. CPU only: moving
// it to a GPU is an error (minidl has no GPU int8 convolution).
class QuantConv2d final : public Int8Layer {
 public:
  // From a dense convolution (weights quantized here, per output channel or per tensor).
  explicit QuantConv2d(const nn::Conv2d& dense, bool per_channel = true);
  // Empty, for load_model to fill (nn/spec.h).
  QuantConv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Conv2dOptions options, bool bias,
              bool per_channel);
  Tensor forward(const Tensor& x) override;
  Tensor forward_fused(const Tensor& x, Activation act) override;
  std::string describe() const override;
  nlohmann::json hyper_parameters() const override;
  // Re-packs the weight for the int8 convolution and checks it.
  void after_load() override;
  // A GPU is refused here, naming the layer, before any tensor of the model moves.
  void check_device(const Device& device) const override;
  void moved_to(const Device&) override { after_load(); }  // back on the CPU: packed again
  const Int8ConvWeight& packed() const { return packed_; }

  int64_t in_channels, out_channels, kernel_size;
  Conv2dOptions options;

 private:
  Int8ConvWeight packed_;
};

// The spec builders for "QuantLinear" and "QuantConv2d" (nn/spec.cpp lists them with its own layers).
nn::ModulePtr build_quant_linear(const nn::SpecReader& r);
nn::ModulePtr build_quant_conv2d(const nn::SpecReader& r);

// The shortest patch (C·kh·kw values) quantize_dynamic makes an int8
// convolution of. The int8 one quantizes its input and transposes its output,
// in proportion to the input and the output, while its arithmetic gain grows
// with the patch. On the Zen 5 VM (`minidl bench conv --int8`,
// docs/benchmarks.md), since it reads its patches in place: a 3×3 over 4
// channels (36) runs at 1.6–1.7× of f32 on both the AVX-512 and the AVX2 path;
// a 1×1 over 32 channels at 1.4× on AVX-512 but 0.7–0.9× on AVX2 and at
// stride 2; a first layer's 3×3 over 1 or 2 channels (9, 18: rows of 3 or 6
// bytes, gathered) at 0.4–0.8×.
inline constexpr int64_t kMinInt8ConvPatch = 36;

struct QuantizeOptions {
  bool per_channel = true;  // one scale per output channel; false: one per tensor
  // Also every Conv2d with groups = 1 and a patch of at least kMinInt8ConvPatch
  // values (PyTorch's quantize_dynamic takes Linear only: false).
  bool convolutions = false;
  // A batch of model inputs: with it, each layer's output error is measured on
  // the activations that really reach it.
  Tensor calibration;
};

// What quantize_dynamic did with one Linear or Conv2d.
struct QuantLayerReport {
  std::string path, layer;                // "1", "Linear(in_features=784, out_features=512, bias=True)"
  std::string kept_f32;                   // why the layer stayed f32 (the other fields then 0), or empty
  double scale_min = 0, scale_max = 0;    // of the weight's scales
  double weight_sqnr_db = 0;              // the dequantized weight against the f32 one
  double output_sqnr_db = 0;              // the layer's output on the calibration input (NaN without one)
  int64_t f32_bytes = 0, int8_bytes = 0;  // the layer's tensors before and after
};

// Replaces every Linear of `model` (eval mode, f32 on the CPU) by a QuantLinear
// and, with options.convolutions, every Conv2d it can by a QuantConv2d; the
// report has a row for each of them, and for each convolution left f32 (saying
// why). Refuses a model that already holds int8 layers, and one with nothing to quantize.
std::vector<QuantLayerReport> quantize_dynamic(nn::Module& model, const QuantizeOptions& options = {});

// Whether any layer of the tree is a QuantLinear or a QuantConv2d.
bool is_quantized(nn::Module& model);

}  // namespace minidl::compress
