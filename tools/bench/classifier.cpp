// tools/bench/classifier.cpp — `minidl bench classifier`: one classifier as
// every variant minidl can make of it, in one honest table.
//
// The question is "which trick makes my model faster here, and what does it
// cost in accuracy?". So every variant is the same model (or, for the shrunk
// and distilled rows, the model they replace), and each is
//   1. checked before it is timed: its logits against the f32 model's (exact
//      variants to rounding, int8 and bf16 by their SQNR), so no time is ever
//      printed for a wrong result;
//   2. evaluated on the test set (its own accuracy, through its own kernels);
//   3. timed interleaved with all the others, round by round, at each batch
//      size (run_side_by_side), with the speed-up over fp32 eager taken per
//      round and labelled FASTER / SLOWER / SAME / UNCLEAR from the spread.
//      A sample is the mean of a few back-to-back calls (>= 200 us of fp32
//      eager): a model served call after call keeps its weights in cache.
// Around the run, a calibration GEMM and memory copy, before and after: when
// they disagree, the machine was busy and the table says so.
//
// With --device cuda every variant is built and checked on the CPU as above,
// then its model moves to the GPU and must give the CPU variant's logits
// (f32 and int8 to rounding, bf16 to its precision) before it is timed, with
// CUDA events; "compile" there is the forward captured as one CUDA graph. A
// variant the GPU cannot run (a sparse convolution) is left out, saying why.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>

#include "compile/plan.h"
#include "compress/quantize.h"
#include "compress/report.h"
#include "compress/sparse_layers.h"
#include "compress/structured.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"
#include "tools/bench/common.h"

namespace minidl::bench {

namespace {

using nn::Module;
using nn::ModulePtr;

ModulePtr clone(Module& m) {
  ModulePtr c = nn::module_from_spec(m.spec());
  c->load_state_dict(m.state_dict());
  c->eval();
  return c;
}

// One row of the table.
struct ModelVariant {
  std::string name;  // "int8 dynamic"
  std::string path;  // the kernels it runs: "int8-avx512-vnni (...)"
  std::string gpu_path;  // the same on a GPU
  std::string note;  // where it came from, when not obvious
  ModulePtr model;
  double macs_per_sample = 0;      // multiply-adds of the work it does (dense-equivalent for sparse)
  double min_sqnr_db = 0;          // its logits against fp32 eager's; 0: exact to rounding; < 0: another model
  bool own_f64_reference = false;  // another model made of f32 layers: checked against its f64 copy
  DType input_dtype = DType::f32;  // a bf16 model takes bf16 images (converted before timing)
  bool compiled = false;           // run through compile(): one plan per input shape
  double peak_macs_per_s = 0;      // the tiles' measured peak when it runs on AMX (0: not reported)
  Device device = kCPU;            // where `model` is (its inputs are moved there)

  // forward(x) for inputs of x's shape: the model itself, or its plan for that shape.
  std::function<Tensor()> runner(const Tensor& x_f32) {
    const Tensor x = x_f32.to(device).to(input_dtype).contiguous();
    if (!compiled) return [m = model, x] { return m->forward(x); };
    auto plan = std::make_shared<Plan>(compile(*model, x));
    return [plan, x] { return plan->run(x); };
  }
};

int64_t weight_elements(Module& m) {
  int64_t n = 0;
  for (const auto& [name, t] : m.state_dict())
    if (is_floating(t.dtype()) || t.dtype() == DType::int8) n += t.numel();
  for (auto& [path, sub] : m.named_modules())
    if (auto* s = dynamic_cast<compress::SparseLinear*>(sub.get()))
      n += s->weight.stored();
    else if (auto* c = dynamic_cast<compress::SparseConv2d*>(sub.get()))
      n += c->weight.stored();
  return n;
}

int64_t model_bytes(Module& m) {
  int64_t b = 0;
  for (const auto& [name, t] : m.state_dict()) b += t.numel() * static_cast<int64_t>(element_size(t.dtype()));
  for (auto& [path, sub] : m.named_modules())
    if (auto* s = dynamic_cast<compress::SparseLinear*>(sub.get()))
      b += s->weight.bytes();
    else if (auto* c = dynamic_cast<compress::SparseConv2d*>(sub.get()))
      b += c->weight.bytes();
  return b;
}

double macs_of(Module& m, const Tensor& example) {
  NoGradGuard no_grad;
  double macs = 0;
  for (const auto& l : compress::sparsity_report(m, example.narrow(0, 0, 1))) macs += static_cast<double>(l.dense_macs);
  return macs;
}

// Test accuracy through the variant's own path (a compiled one plans each batch shape once).
double accuracy_of(ModelVariant& v, const nn::ImageDataset& test) {
  nn::DataLoader loader(test, {.batch_size = 500, .shuffle = false});
  loader.start_epoch(0);
  std::map<int64_t, std::shared_ptr<Plan>> plans;  // a compiled variant: one plan per batch size
  int64_t correct = 0, total = 0;
  while (auto batch = loader.next()) {
    const Tensor x = batch->images.to(v.device).to(v.input_dtype);
    Tensor logits;
    if (v.compiled) {
      auto& plan = plans[x.size(0)];
      if (!plan) plan = std::make_shared<Plan>(compile(*v.model, x));
      logits = plan->run(x);
    } else {
      logits = v.model->forward(x);
    }
    const auto pred = argmax(logits.to(DType::f32), 1).to(kCPU).to_vector<int64_t>();
    const auto truth = batch->labels.to_vector<int64_t>();
    for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == truth[i];
    total += static_cast<int64_t>(pred.size());
  }
  return total ? static_cast<double>(correct) / total : 0;
}

// Calibration: an SGEMM (compute) and a memory copy, medians — on the CPU 512³
// and 64 MiB, on a GPU 4096³ and 1 GiB (device to device), timed by `timer`.
struct Calibration {
  double gemm_gflops = 0, copy_gbs = 0;
  int64_t gemm_n = 0;
};
Calibration calibrate(const Device& device, const Timer& timer) {
  Generator gen(9);
  const int64_t n = device.is_cuda() ? 4096 : 512, floats = device.is_cuda() ? 256 << 20 : 16 << 20;
  Tensor a = randn({n, n}, {}, gen).to(device), b = randn({n, n}, {}, gen).to(device);
  Options o{.warmup = 2, .min_runs = 15, .min_seconds = 0.15};
  const Stats g = run([&] { Tensor c = matmul(a, b); }, o, timer);
  Stats c;
  if (device.is_cuda()) {
    const Tensor src = full({floats}, 1.5, {.dtype = DType::f32, .device = device});
    Tensor dst = empty({floats}, {.dtype = DType::f32, .device = device});
    c = run([&] { dst.copy_(src); }, o, timer);
  } else {
    std::vector<float> src(static_cast<size_t>(floats), 1.5f), dst(static_cast<size_t>(floats));
    c = run([&] { std::memcpy(dst.data(), src.data(), src.size() * sizeof(float)); }, o, timer);
  }
  return {2.0 * static_cast<double>(n * n * n) / g.median / 1e9,
          2.0 * static_cast<double>(floats) * sizeof(float) / c.median / 1e9, n};
}

std::string pct(double f) { return fmt::format("{:.2f}%", 100 * f); }

}  // namespace

int bench_classifier(const ClassifierOptions& co, const CommonOptions& o) {
  // The base model: a checkpoint, or a zoo name (runs/NAME.safetensors when it was trained there).
  std::string source = co.model;
  ModulePtr base;
  const auto& zoo = nn::model_names();
  const bool is_zoo = std::find(zoo.begin(), zoo.end(), co.model) != zoo.end();
  if (is_zoo && std::filesystem::exists("runs/" + co.model + ".safetensors"))
    source = "runs/" + co.model + ".safetensors";
  if (is_zoo && source == co.model) {
    std::cerr << fmt::format(
        "warning: no runs/{}.safetensors: timing an untrained {} (accuracy is chance); train it "
        "with `minidl train --model {} --out runs/{}.safetensors` or pass a checkpoint\n",
        co.model, co.model, co.model, co.model);
    Generator gen(0);
    base = nn::build_model(co.model, gen);
  } else {
    base = nn::load_model(source);
  }
  base->eval();
  MINIDL_CHECK(!compress::is_quantized(*base), "bench classifier: {} is already int8; give the f32 checkpoint", source);
  for (int64_t b : co.batches) MINIDL_CHECK(b >= 1, "bench classifier: batch size {} must be positive", b);
  const int64_t largest = *std::max_element(co.batches.begin(), co.batches.end());

  nn::ImageDataset test = nn::load_mnist_format(co.data_dir, "t10k");
  if (co.limit_test > 0) test = test.subset(co.limit_test);
  const Tensor images = real_images(co.data_dir, std::max<int64_t>(largest, 64));
  const Tensor check_batch = images.narrow(0, 0, 64).contiguous();
  NoGradGuard no_grad;
  Tensor reference_logits;
  try {
    reference_logits = base->forward(check_batch);
  } catch (const Error& e) {
    fail("bench classifier: {} does not take this data's {}x{} images: {}", source, test.rows, test.cols, e.what());
  }
  const double base_macs = macs_of(*base, check_batch);
  const std::string dense_path = cpu::gemm_kernel_name(cpu::GemmKernel::best);
  const double amx_int8_peak = cpu::amx_peak_macs_per_second(false),
               amx_bf16_peak = cpu::amx_peak_macs_per_second(true);
  auto on_amx = [](const std::string& path) { return path.find("amx") != std::string::npos; };

  // ---- the variants
  std::vector<ModelVariant> variants;
  const std::string gpu_gemm = cuda::gemm_kernel_name(), graph = ", one CUDA graph";
  variants.push_back({"fp32 eager", dense_path, gpu_gemm, "", base, base_macs, 0});
  {
    ModelVariant v{"fp32 compiled",
                   "f32 packed once (avx512) + conv",
                   gpu_gemm + graph,
                   "compile(): BN folded, bias+ReLU(+max pool) fused",
                   base,
                   base_macs,
                   0};
    if (!cpu::gemm_packed_f32_fast()) v.path = dense_path;
    v.compiled = true;
    variants.push_back(v);
  }
  {
    ModulePtr m = clone(*base);
    m->to(DType::bf16);
    const std::string path = cpu::gemm_bf16_kernel_name(cpu::Bf16GemmKernel::best);
    const std::string gpu_bf16 = cuda::linear_bf16_kernel_name();
    ModelVariant eager{
        "bf16 eager", path, gpu_bf16, "model.to(bf16); weights packed per call (at batch <= 4 read as stored)", m,
        base_macs,    20};
    eager.input_dtype = DType::bf16;
    if (on_amx(path)) eager.peak_macs_per_s = amx_bf16_peak;
    variants.push_back(eager);
    ModelVariant compiled = eager;
    compiled.name = "bf16 + compile", compiled.gpu_path = gpu_bf16 + graph,
    compiled.note = cpu::gemm_bf16_outruns_f32()
                        ? "bf16 weights packed once; linear and conv on bf16 GEMMs; f32 between layers"
                        : "bf16 weights packed once; conv widened to f32; f32 between layers";
    compiled.compiled = true;
    variants.push_back(compiled);
  }
  {
    ModulePtr m = clone(*base);
    compress::quantize_dynamic(*m);
    ModelVariant eager{"int8 dynamic",
                       cpu::qgemm_kernel_name(cpu::QGemmKernel::best),
                       "int8 dp4a (hand-written)",
                       "Linear layers int8, conv f32",
                       m,
                       base_macs,
                       20};
    if (on_amx(eager.path)) eager.peak_macs_per_s = amx_int8_peak;
    variants.push_back(eager);
    ModelVariant compiled = eager;
    compiled.name = "int8 + compile", compiled.note = "compile() of the int8 model";
    compiled.gpu_path += graph;
    compiled.compiled = true;
    variants.push_back(compiled);
  }
  {
    // Beyond PyTorch's dynamic quantization: the convolutions int8 too, where
    // their patch is long enough to pay (compress/quantize.h). CPU only: on a GPU
    // these two are left out, saying why.
    ModulePtr m = clone(*base);
    compress::QuantizeOptions with_convs;
    with_convs.convolutions = true;
    const auto report = compress::quantize_dynamic(*m, with_convs);
    int64_t convs = 0, kept = 0;
    for (const auto& r : report) kept += !r.kept_f32.empty();
    for (auto& [path, layer] : m->named_modules())
      convs += dynamic_cast<compress::QuantConv2d*>(layer.get()) != nullptr;
    if (convs > 0) {
      ModelVariant eager{
          "int8 + conv",
          std::string(cpu::qgemm_kernel_name(cpu::QGemmKernel::best)) + " + int8 conv",
          "-",
          fmt::format("Linear and {} conv int8{}", convs,
                      kept ? fmt::format(", {} conv f32 (patch < {})", kept, compress::kMinInt8ConvPatch) : ""),
          m,
          base_macs,
          20};
      if (on_amx(eager.path)) eager.peak_macs_per_s = amx_int8_peak;
      variants.push_back(eager);
      ModelVariant compiled = eager;
      compiled.name = "int8 + conv + compile",
      compiled.note = "compile() of it: BN folded into the int8 scales; conv+ReLU(+max pool) one step";
      compiled.compiled = true;
      variants.push_back(compiled);
    }
  }
  auto add_checkpoint_row = [&](const std::string& name, const std::string& path, const char* what) {
    ModulePtr m = nn::load_model(path);
    m->eval();
    variants.push_back(
        {name, dense_path, gpu_gemm, fmt::format("{} ({})", path, what), m, macs_of(*m, check_batch), -1, true});
  };
  if (!co.sparse.empty()) {
    ModulePtr m = nn::load_model(co.sparse);
    m->eval();
    const Tensor masked_logits = m->forward(check_batch);  // the CSR model must give the masked model's logits
    const auto choices = compress::to_sparse(*m, compress::SparseFormat::csr());
    require_close("classifier", "sparse CSR's logits (vs its masked dense model)", m->forward(check_batch),
                  masked_logits, 1e-4);
    int converted = 0;
    for (const auto& c : choices) converted += c.choice != "dense";
    MINIDL_CHECK(converted > 0, "bench classifier: --sparse {} has no pruned layer to store as CSR", co.sparse);
    variants.push_back({"sparse CSR", compress::sparse_linear_kernel_name(),
                        cuda::spmm_kernel_name(cuda::SpmmKernel::best),
                        fmt::format("{} ({} layers CSR)", co.sparse, converted), m, base_macs, -1});
  }
  if (!co.shrunk.empty()) add_checkpoint_row("structured (shrunk)", co.shrunk, "channel-pruned");
  if (!co.student.empty()) add_checkpoint_row("distilled student", co.student, "a smaller model");

  // ---- checked before timing
  for (auto& v : variants) {
    const Tensor y = v.runner(check_batch)().to(DType::f32);
    MINIDL_CHECK(y.shape() == reference_logits.shape(), "bench classifier: {} gives logits {}, fp32 eager {}", v.name,
                 y.shape(), reference_logits.shape());
    if (v.min_sqnr_db == 0) require_close("classifier", v.name + "'s logits", y, reference_logits, 1e-4);
    if (v.min_sqnr_db > 0) {
      const double s = sqnr_db(reference_logits, y);
      MINIDL_CHECK(s >= v.min_sqnr_db,
                   "bench classifier: {}'s logits are {:.1f} dB from fp32 eager's (need >= {}): a "
                   "wrong result is not timed",
                   v.name, s, v.min_sqnr_db);
    }
    if (v.min_sqnr_db < 0 && v.own_f64_reference) {
      // Another (dense f32) model: checked against its own f64 copy instead.
      ModulePtr ref = clone(*v.model);
      ref->to(DType::f64);
      require_close("classifier", v.name + "'s logits (vs f64)", y, ref->forward(check_batch.to(DType::f64)), 1e-3);
    }
  }

  // ---- on a GPU: each variant's model moved there (eager and compiled share
  // one), and checked against the CPU variant it was before timing
  const Device device(o.device);
  const Timer timer = timer_for(o);
  std::vector<std::string> left_out;
  if (device.is_cuda()) {
    std::vector<Tensor> want;
    for (auto& v : variants) want.push_back(v.runner(check_batch)().to(DType::f32));
    std::map<Module*, bool> moved;  // whether the model could move
    std::vector<ModelVariant> kept;
    for (size_t i = 0; i < variants.size(); ++i) {
      ModelVariant v = variants[i];
      if (!moved.count(v.model.get())) {
        try {
          v.model->to(device);  // check_device() refuses before anything moves
          moved[v.model.get()] = true;
        } catch (const Error& e) {
          moved[v.model.get()] = false;
          left_out.push_back(fmt::format("{}: left out, it cannot run on {}: {}", v.name, device, e.what()));
        }
      }
      if (!moved[v.model.get()]) continue;
      v.device = device, v.path = v.gpu_path, v.peak_macs_per_s = 0;
      if (v.compiled) v.note = "compile(): the eager forward captured as one CUDA graph, replayed";
      if (v.name == "bf16 eager") v.note = "model.to(bf16); the GPU reads the weights as stored";
      const Tensor got = v.runner(check_batch)().to(kCPU).to(DType::f32);
      if (v.input_dtype == DType::bf16) {
        // bf16 rounds every layer's output: a sum near a rounding boundary may go the other way.
        const double db = sqnr_db(want[i], got);
        MINIDL_CHECK(db >= 30, "bench classifier: {} on {} is {:.1f} dB from the CPU's (need >= 30): not timed", v.name,
                     device, db);
      } else {
        require_close("classifier", v.name + "'s logits on " + o.device + " (vs the CPU's)", got, want[i], 1e-4);
      }
      kept.push_back(v);
    }
    variants = kept;
  }

  const Calibration before = calibrate(device, timer);
  std::vector<double> accuracy;
  for (auto& v : variants) accuracy.push_back(accuracy_of(v, test));

  // ---- timed, interleaved, per batch size
  const Options opts = to_options(o);
  std::vector<SideBySide> results;
  for (int64_t b : co.batches) {
    const Tensor x = images.narrow(0, 0, b).contiguous();
    // Each sample is the mean of `reps` back-to-back calls, reps chosen so that a
    // sample of fp32 eager lasts >= 200 us: the latency of a model served call
    // after call (its weights warm in the caches), not of the first call after
    // the other variants have evicted them.
    const auto probe = variants[0].runner(x);
    probe();
    const double once = timer([&] { Tensor y = probe(); });
    const int reps = std::clamp(static_cast<int>(std::ceil(200e-6 / once)), 1, 64);
    std::vector<Variant> runs;
    for (auto& v : variants)
      runs.push_back({v.name, [run = v.runner(x), reps] {
                        for (int r = 0; r < reps; ++r) Tensor y = run();
                      }});
    results.push_back(
        run_side_by_side(runs, opts, [reps, &timer](const std::function<void()>& fn) { return timer(fn) / reps; }));
  }
  const Calibration after = calibrate(device, timer);

  // ---- the report
  const cpu::CpuFeatures& f = cpu::cpu_features();
  std::string fingerprint = fmt::format("CPU {} ({}); AVX-512 {}, AVX512_BF16 {}, VNNI {}, AMX {}; {} threads\n",
                                        f.model.empty() ? f.vendor : f.model, cpu::cpu_path_name(cpu::cpu_path()),
                                        f.avx512f ? "yes" : "no", f.avx512_bf16 ? "yes" : "no",
                                        f.avx512_vnni ? "avx512"
                                        : f.avx_vnni  ? "avx"
                                                      : "no",
                                        f.amx_tile ? "yes" : "no", threads());
  if (device.is_cuda()) {
    const cuda::DeviceInfo gpu = cuda::device_info(device.index);
    fingerprint = fmt::format("GPU {} ({} SMs, sm_{}{}), timed with CUDA events, the inputs already on it\n", gpu.name,
                              gpu.multiprocessors, gpu.major, gpu.minor) +
                  fingerprint;
  }
  fingerprint += fmt::format(
      "calibration{} before: SGEMM {}^3 {:.0f} GFLOP/s, copy {:.1f} GB/s; after: {:.0f} GFLOP/s, "
      "{:.1f} GB/s\n",
      device.is_cuda() ? " (on the GPU)" : "", before.gemm_n, before.gemm_gflops, before.copy_gbs, after.gemm_gflops,
      after.copy_gbs);
  const double drift =
      std::max(std::abs(after.gemm_gflops / before.gemm_gflops - 1), std::abs(after.copy_gbs / before.copy_gbs - 1));
  const bool busy = drift > 0.10;
  if (amx_int8_peak > 0 && !device.is_cuda())
    fingerprint += fmt::format(
        "AMX tiles, measured on registers: int8 {:.2f} TOP/s, bf16 {:.2f} TFLOP/s ({} threads); the int8 and bf16 "
        "rows' '% of AMX peak' is their whole model's rate against these\n",
        2 * amx_int8_peak / 1e12, 2 * amx_bf16_peak / 1e12, threads());
  std::vector<std::string> warnings = left_out;
  if (!cpu::gemm_bf16_is_native() && !device.is_cuda())
    warnings.push_back(fmt::format(
        "warning: this CPU has no bf16 instructions (AVX512_BF16 or AMX-BF16) on the {} path: the bf16 rows run "
        "{}, which widens to f32 — they work, but expect them slower than fp32",
        cpu::cpu_path_name(cpu::cpu_path()), cpu::gemm_bf16_kernel_name(cpu::Bf16GemmKernel::best)));
  if (busy)
    warnings.push_back(
        fmt::format("WARNING: the calibration moved {:.0f}% during the run: the machine was busy; the "
                    "ratios (interleaved) hold better than the absolute times",
                    100 * drift));
  for (const auto& w : warnings) fingerprint += w + "\n";

  Table variants_table(fmt::format("{}: the variants", source),
                       {"variant", "kernels", "accuracy", "vs fp32", "weights", "bytes", "from"});
  for (size_t i = 0; i < variants.size(); ++i) {
    auto& v = variants[i];
    variants_table.add_row(
        {v.name, v.path, pct(accuracy[i]), i == 0 ? "" : fmt::format("{:+.2f}", 100 * (accuracy[i] - accuracy[0])),
         std::to_string(weight_elements(*v.model)), fmt::format("{:.1f} KiB", model_bytes(*v.model) / 1024.0), v.note});
  }
  std::vector<std::string> columns = {"variant"};
  for (int64_t b : co.batches) {
    columns.push_back(fmt::format("batch {}", b));
    columns.push_back("speed-up");
  }
  columns.push_back(fmt::format("samples/s @{}", largest));
  columns.push_back(fmt::format("GFLOP/s @{}", largest));
  // Only where the AMX peaks were measured: elsewhere the column would be empty.
  const bool amx_column =
      std::any_of(variants.begin(), variants.end(), [](const auto& v) { return v.peak_macs_per_s > 0; });
  if (amx_column) columns.push_back("% of AMX peak");
  Table latency(fmt::format("latency: median (p10-p90), interleaved in rounds; speed-up over fp32 eager per round "
                            "(median, verdict from p10/p90)"),
                columns);
  nlohmann::json jv = nlohmann::json::array();
  for (size_t i = 0; i < variants.size(); ++i) {
    auto& v = variants[i];
    std::vector<std::string> row = {v.name};
    nlohmann::json per_batch = nlohmann::json::array();
    for (size_t bi = 0; bi < co.batches.size(); ++bi) {
      const Stats& s = results[bi].stats[i];
      row.push_back(fmt::format("{} ({}-{})", format_seconds(s.median), format_seconds(s.p10), format_seconds(s.p90)));
      const double sp = results[bi].speedup[i], p10 = results[bi].speedup_p10[i], p90 = results[bi].speedup_p90[i];
      row.push_back(i == 0 ? "1.00x" : fmt::format("{:.2f}x {}", sp, verdict(p10, p90)));
      per_batch.push_back({{"batch", co.batches[bi]},
                           {"stats", s.to_json()},
                           {"speedup", sp},
                           {"speedup_p10", p10},
                           {"speedup_p90", p90},
                           {"verdict", i == 0 ? "baseline" : verdict(p10, p90)},
                           {"gflops", 2 * v.macs_per_sample * co.batches[bi] / s.median / 1e9}});
    }
    const Stats& big = results.back().stats[i];
    row.push_back(fixed(static_cast<double>(largest) / big.median, 0));
    row.push_back(fixed(2 * v.macs_per_sample * largest / big.median / 1e9, 1));
    const double peak_fraction =
        v.peak_macs_per_s > 0 ? v.macs_per_sample * largest / big.median / v.peak_macs_per_s : 0;
    if (amx_column) row.push_back(peak_fraction > 0 ? fmt::format("{:.1f}%", 100 * peak_fraction) : "");
    latency.add_row(row);
    jv.push_back({{"variant", v.name},
                  {"kernels", v.path},
                  {"from", v.note},
                  {"accuracy", accuracy[i]},
                  {"weights", weight_elements(*v.model)},
                  {"bytes", model_bytes(*v.model)},
                  {"macs_per_sample", v.macs_per_sample},
                  {"amx_peak_macs_per_s", v.peak_macs_per_s},
                  {"results", per_batch}});
  }
  nlohmann::json j = {{"benchmark", "classifier"},
                      {"model", source},
                      {"threads", threads()},
                      {"device", o.device},
                      {"gpu", device.is_cuda() ? cuda::device_info(device.index).name : ""},
                      {"cpu", cpu::cpu_summary()},
                      {"test_samples", test.size},
                      {"calibration",
                       {{"before", {{"gemm_gflops", before.gemm_gflops}, {"copy_gbs", before.copy_gbs}}},
                        {"after", {{"gemm_gflops", after.gemm_gflops}, {"copy_gbs", after.copy_gbs}}},
                        {"busy", busy}}},
                      {"warnings", warnings},
                      {"variants", jv},
                      {"tables", {variants_table.json(), latency.json()}}};
  write_json_out(j, o);
  if (o.json) {
    std::cout << j.dump() << std::endl;
    return 0;
  }
  std::cout << fingerprint;
  if (o.markdown)
    std::cout << variants_table.markdown() << "\n" << latency.markdown();
  else
    std::cout << variants_table.text() << "\n" << latency.text();
  return 0;
}

}  // namespace minidl::bench
