// tools/quantize.cpp — `minidl quantize CKPT --dynamic int8 --out OUT`.
//
// Loads any checkpoint load_model reads, replaces its Linear layers by int8
// QuantLinear (compress/quantize.h) — with --conv its convolutions by
// QuantConv2d too, where they gain — and reports what that cost: test accuracy
// before and after, per layer the weight scales and the SQNR of the weight and
// of the layer's output on real activations (calibration images run through
// the f32 model), the SQNR of the logits, and the bytes on disk. The int8
// checkpoint is written last, atomically, so a refused request writes nothing.
#include "tools/quantize.h"

#include <cmath>
#include <filesystem>
#include <iostream>

#include "compress/quantize.h"
#include "core/file.h"
#include "minidl.h"
#include "tools/bench/common.h"

namespace minidl::tools {

namespace {
std::string db(double v) { return std::isnan(v) ? "-" : std::isinf(v) ? "inf" : fmt::format("{:.1f} dB", v); }
std::string kib(int64_t bytes) { return fmt::format("{:.1f} KiB", static_cast<double>(bytes) / 1024); }
}  // namespace

int run_quantize(const QuantizeOptions& o) {
  MINIDL_CHECK(o.dynamic == "int8", "quantize: --dynamic '{}' is not a scheme minidl has (known: int8)", o.dynamic);
  MINIDL_CHECK(!o.out.empty(), "quantize: --out is required (the int8 checkpoint to write)");
  prepare_output(o.out, "quantize --out");
  MINIDL_CHECK(o.calibration >= 1, "quantize: --calibration must be at least 1 image, got {}", o.calibration);
  std::string arch;
  nn::ModulePtr model = nn::load_model(o.checkpoint, &arch);
  model->eval();
  MINIDL_CHECK(!compress::is_quantized(*model),
               "quantize: {} is already quantized (it holds int8 layers); quantize the f32 checkpoint it came from",
               o.checkpoint);

  nn::ImageDataset test = nn::load_mnist_format(o.data_dir, "t10k");
  if (o.limit_test > 0) test = test.subset(o.limit_test);
  const Tensor calibration = bench::real_images(o.data_dir, std::min<int64_t>(o.calibration, test.size));
  Tensor logits32;
  {
    NoGradGuard no_grad;
    try {
      logits32 = model->forward(calibration);
    } catch (const Error& e) {
      fail("quantize: {} does not take this data's {}x{} images: {}", o.checkpoint, test.rows, test.cols, e.what());
    }
  }
  const nn::EvalResult before = nn::evaluate(*model, test);

  int64_t f32_tensor_bytes = 0;
  for (const auto& [name, t] : model->state_dict()) f32_tensor_bytes += t.numel() * int64_t(element_size(t.dtype()));
  compress::QuantizeOptions qo;
  qo.per_channel = !o.per_tensor, qo.convolutions = o.convolutions, qo.calibration = calibration;
  const auto layers = compress::quantize_dynamic(*model, qo);
  Tensor logits8;
  {
    NoGradGuard no_grad;
    logits8 = model->forward(calibration);
  }
  const nn::EvalResult after = nn::evaluate(*model, test);
  const double logits_sqnr = sqnr_db(logits32, logits8);

  nn::save_model(o.out, *model,
                 {{"quantization", fmt::format("int8-dynamic, weights per {}", o.per_tensor ? "tensor" : "channel")},
                  {"source", o.checkpoint}});
  const auto bytes_in = static_cast<int64_t>(std::filesystem::file_size(o.checkpoint));
  const auto bytes_out = static_cast<int64_t>(std::filesystem::file_size(o.out));

  bench::Table table(fmt::format("{} ({}) -> {}: int8 dynamic, weights per {}; SQNR on {} test images", o.checkpoint,
                                 arch, o.out, o.per_tensor ? "tensor" : "channel", calibration.size(0)),
                     {"layer", "was", "weight scales", "weight SQNR", "output SQNR", "f32", "int8"});
  nlohmann::json jl = nlohmann::json::array();
  nlohmann::json jk = nlohmann::json::array();
  std::string kept_text;
  for (const auto& r : layers) {
    if (!r.kept_f32.empty()) {  // a convolution left f32, and why
      jk.push_back({{"path", r.path}, {"layer", r.layer}, {"why", r.kept_f32}});
      kept_text += fmt::format("kept f32: {} {}: {}\n", r.path, r.layer, r.kept_f32);
      continue;
    }
    table.add_row({r.path, r.layer, fmt::format("{:.2e} .. {:.2e}", r.scale_min, r.scale_max), db(r.weight_sqnr_db),
                   db(r.output_sqnr_db), kib(r.f32_bytes), kib(r.int8_bytes)});
    jl.push_back({{"path", r.path},
                  {"layer", r.layer},
                  {"scale_min", r.scale_min},
                  {"scale_max", r.scale_max},
                  {"weight_sqnr_db", r.weight_sqnr_db},
                  {"output_sqnr_db", r.output_sqnr_db},
                  {"f32_bytes", r.f32_bytes},
                  {"int8_bytes", r.int8_bytes}});
  }
  if (o.json) {
    std::cout << nlohmann::json{{"command", "quantize"},
                                {"checkpoint", o.checkpoint},
                                {"out", o.out},
                                {"scheme", "int8-dynamic"},
                                {"per_channel", !o.per_tensor},
                                {"accuracy_f32", before.accuracy},
                                {"accuracy_int8", after.accuracy},
                                {"logits_sqnr_db", logits_sqnr},
                                {"model_bytes_f32", f32_tensor_bytes},
                                {"file_bytes_in", bytes_in},
                                {"file_bytes_out", bytes_out},
                                {"test_samples", test.size},
                                {"layers", jl},
                                {"kept_f32", jk}}
                     .dump()
              << std::endl;
    return 0;
  }
  std::cout << table.text() << kept_text;
  std::cout << fmt::format("logits SQNR {}\n", db(logits_sqnr));
  std::cout << fmt::format("test accuracy: f32 {:.2f}%, int8 {:.2f}% ({:+.2f} points, {} images)\n",
                           100 * before.accuracy, 100 * after.accuracy, 100 * (after.accuracy - before.accuracy),
                           test.size);
  std::cout << fmt::format("model tensors: f32 {} -> int8 {} ({:.2f}x smaller); files: {} {} -> {} {}\n",
                           kib(f32_tensor_bytes), kib(bytes_out), static_cast<double>(f32_tensor_bytes) / bytes_out,
                           o.checkpoint, kib(bytes_in), o.out, kib(bytes_out));
  return 0;
}

}  // namespace minidl::tools
