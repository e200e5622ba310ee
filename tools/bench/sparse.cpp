// tools/bench/sparse.cpp — `minidl bench sparse`: does unstructured pruning make a
// layer faster, and from what sparsity on?
//
// For each weight shape and each sparsity the sweep builds the pruned weights
// once (uniformly random zeros, magnitude-pruned real weights when a checkpoint
// gives them, and zeros in whole r×c blocks for each BSR format), converts them
// (timing the conversion), and then, at each batch size, times side by side in
// one run, round by round: minidl's dense GEMM, OpenBLAS's, the structurally
// shrunk dense layer (the same fraction of output neurons removed), CSR on the
// random and the magnitude patterns, and BSR on its block pattern. Every
// variant's output is checked (Freivalds, in f64) before it is timed.
//
// On a GPU (--device cuda, bench_sparse_cuda below) the same question for a
// Linear layer: cuBLAS dense, the shrunk dense layer, and CSR through the
// hand-written kernel and through cuSPARSE, timed with CUDA events.
//
// Speed-ups are the median of per-round ratios against dense from the same run;
// the crossover is the sparsity past which a variant stays faster than dense,
// interpolated between the grid points around it ("none <= 99%" when it never is).
#include "compress/sparse.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <numeric>
#include <random>

#include "core/file.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "nn/train.h"
#include "ops/cpu/cpu_features.h"
#include "tools/bench/common.h"
#include "tools/bench/progress.h"

namespace minidl::bench {

namespace {

using compress::SparseFormat;
using compress::SparseMatrix;

// The fraction s of w's elements whose score is lowest are zeroed (exactly
// round(s · n) of them). Scores are per element, or per r×c block for a block
// pattern (then round(s · blocks) whole blocks go).
Tensor prune_lowest(const Tensor& w, const std::vector<float>& score, double sparsity, int64_t r = 1, int64_t c = 1) {
  const int64_t rows = w.size(0), cols = w.size(1), blocks = (rows / r) * (cols / c);
  const auto drop = static_cast<int64_t>(std::llround(sparsity * static_cast<double>(blocks)));
  std::vector<int64_t> order(static_cast<size_t>(blocks));
  std::iota(order.begin(), order.end(), 0);
  std::nth_element(order.begin(), order.begin() + drop, order.end(),
                   [&](int64_t a, int64_t b) { return score[a] < score[b] || (score[a] == score[b] && a < b); });
  Tensor pruned = w.clone();
  float* p = pruned.data_ptr<float>();
  for (int64_t k = 0; k < drop; ++k) {
    const int64_t br = order[k] / (cols / c), bc = order[k] % (cols / c);
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j) p[(br * r + i) * cols + bc * c + j] = 0.0f;
  }
  return pruned;
}

std::vector<float> random_scores(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> s(static_cast<size_t>(n));
  for (float& v : s) v = u(rng);
  return s;
}

// A Linear or (groups 1) Conv2d weight of a --weights checkpoint, flattened to
// (out, C·kh·kw), for the shape it matches.
struct RealWeight {
  std::string shape;  // the swept shape's name
  std::string from;   // "checkpoint:parameter"
  Tensor flat;
};

// For each swept shape the first matching weight among the checkpoints. Each
// checkpoint must hold at least one weight of a swept shape: one that matches
// nothing (another model's, an int8 one, a typo among several) would leave its
// pattern out of the table without a word, so it is refused, naming the
// weights it holds.
std::vector<RealWeight> real_weights(const std::vector<std::string>& checkpoints,
                                     const std::vector<SweepShape>& shapes) {
  std::vector<RealWeight> found;
  std::vector<std::string> swept;  // for the error
  for (const SweepShape& sh : shapes) swept.push_back(sh.name);
  for (const std::string& path : checkpoints) {
    nn::ModulePtr model = nn::load_model(path);
    std::vector<std::string> held;
    bool matched = false;
    for (const auto& [name, t] : model->named_parameters()) {
      if (name.size() < 7 || name.substr(name.size() - 7) != ".weight" || t.dim() < 2) continue;
      held.push_back(fmt::format("{} {}", name, fmt::join(t.shape(), "x")));
      const Tensor flat = t.detach().reshape({t.size(0), t.numel() / t.size(0)});
      for (const SweepShape& sh : shapes) {
        if (flat.size(0) != sh.out || flat.size(1) != sh.in || (t.dim() == 4) != sh.conv()) continue;
        matched = true;  // even when an earlier checkpoint already gave this shape its pattern
        const bool taken =
            std::any_of(found.begin(), found.end(), [&](const RealWeight& r) { return r.shape == sh.name; });
        if (!taken) found.push_back({sh.name, path + ":" + name, flat.contiguous().clone()});
      }
    }
    MINIDL_CHECK(matched,
                 "bench sparse: --weights {}: none of its weights has a swept shape ({}); it holds {}. Sweep one of "
                 "its shapes with --shapes OUTxIN (a conv: convOUTxC·kh·kwxPOSITIONS)",
                 path, fmt::join(swept, ", "),
                 held.empty() ? std::string("no f32 Linear or Conv2d weight (an int8 checkpoint?)")
                              : fmt::format("{}", fmt::join(held, ", ")));
  }
  return found;
}

struct Implementation {
  std::string name;     // "csr", "bsr4x4", "dense", "openblas", "shrunk"
  std::string pattern;  // "random", "magnitude", "block4x4", or "" for dense ones
  Tensor weight;        // the dense equivalent (masked or shrunk) the output is checked against
  SparseMatrix matrix;  // for the sparse ones
  bool sparse = false;
  double convert_seconds = 0;
  std::string label() const { return pattern.empty() ? name : name + " (" + pattern + ")"; }
};

Implementation dense_implementation(std::string name, Tensor weight) {
  Implementation im;
  im.name = std::move(name), im.weight = std::move(weight);
  return im;
}

// One (crossover) point of a variant: speed-up against dense at one sparsity.
struct Point {
  double sparsity, speedup;
};

// The sparsity from which on the speed-up stays ≥ 1, interpolated; NaN if never.
double crossover(const std::vector<Point>& points) {
  if (points.empty() || points.back().speedup < 1) return std::nan("");
  size_t first = points.size() - 1;
  while (first > 0 && points[first - 1].speedup >= 1) --first;
  if (first == 0) return points[0].sparsity;
  const Point a = points[first - 1], b = points[first];
  return a.sparsity + (1 - a.speedup) / (b.speedup - a.speedup) * (b.sparsity - a.sparsity);
}

std::string percent(double s) {
  std::string t = fixed(100 * s, 1);
  if (t.size() > 2 && t.substr(t.size() - 2) == ".0") t.resize(t.size() - 2);
  return t + "%";
}

}  // namespace

int bench_sparse(const SparseSweepOptions& s, const CommonOptions& o) {
  NoGradGuard no_grad;
  if (!s.out.empty()) prepare_output(s.out, "bench sparse --out");
  std::vector<std::string> shape_names = s.shapes, format_names = s.formats;
  std::vector<int64_t> batches = s.batches;
  std::vector<double> sparsities = s.sparsities;
  if (shape_names.empty())
    shape_names = s.quick ? std::vector<std::string>{"256x512", "1024x1024", "conv64x288x196"}
                          : std::vector<std::string>{"512x784",   "256x512",   "128x3136", "conv64x288x196",
                                                     "1024x1024", "4096x4096", "3072x768", "768x3072"};
  if (batches.empty()) batches = s.quick ? std::vector<int64_t>{1, 32} : std::vector<int64_t>{1, 32, 256};
  const bool batch_one = std::count(batches.begin(), batches.end(), 1) > 0;
  if (sparsities.empty())
    sparsities = s.quick ? std::vector<double>{0, 0.5, 0.7, 0.9, 0.99}
                         : std::vector<double>{0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99};
  if (format_names.empty())
    format_names = s.quick ? std::vector<std::string>{"csr", "bsr4x4"}
                           : std::vector<std::string>{"csr", "bsr1x4", "bsr4x1", "bsr4x4", "bsr8x8", "bsr16x16"};
  std::vector<SparseFormat> formats;
  for (const std::string& f : format_names) formats.push_back(SparseFormat::parse(f));
  for (double sp : sparsities)
    MINIDL_CHECK(sp >= 0 && sp <= 1, "bench sparse: sparsity {} is outside [0, 1]", sp);
  std::sort(sparsities.begin(), sparsities.end());
  std::vector<SweepShape> shapes;
  for (const std::string& n : shape_names) shapes.push_back(parse_sweep_shape(n));
  for (const SweepShape& sh : shapes)
    for (const SparseFormat& f : formats)
      MINIDL_CHECK(sh.out % f.block_rows == 0 && sh.in % f.block_cols == 0,
                   "bench sparse: {} blocks do not divide shape {} ({} x {}); refused, not padded", f.name(), sh.name,
                   sh.out, sh.in);
  Options timing = to_options(o);
  const std::vector<RealWeight> real_weights_found = real_weights(s.weights, shapes);
#ifdef MINIDL_HAVE_OPENBLAS
  const int blas_threads = match_openblas_threads();
#endif

  nlohmann::json results = nlohmann::json::array(), conversions = nlohmann::json::array();
  // (shape, batch, implementation label) -> points, for the crossovers.
  std::map<std::tuple<std::string, int64_t, std::string>, std::vector<Point>> curves;
  std::map<std::tuple<std::string, int64_t, std::string>, std::vector<std::string>> cells;
  std::vector<std::string> labels_in_order;
  Progress progress("bench sparse", static_cast<int64_t>(shapes.size() * sparsities.size() * batches.size()));
  for (const SweepShape& sh : shapes) {
    Generator gen(static_cast<uint64_t>(sh.out * 131 + sh.in));
    // Kaiming-scaled normal weights, so outputs stay O(1) at every shape.
    Tensor w0 = randn({sh.out, sh.in}, {}, gen) * (1.0 / std::sqrt(static_cast<double>(sh.in)));
    const std::vector<float> uniform_scores = random_scores(sh.out * sh.in, 7);
    Tensor real;
    for (const RealWeight& r : real_weights_found)
      if (r.shape == sh.name) real = r.flat;
    std::vector<float> magnitude_scores;
    if (real.defined()) {
      const auto v = real.to_vector<float>();
      for (float x : v) magnitude_scores.push_back(std::abs(x));
    }
    for (double sparsity : sparsities) {
      // The implementations at this sparsity, converted once for every batch.
      std::vector<Implementation> impls;
      impls.push_back(dense_implementation("dense", w0));
#ifdef MINIDL_HAVE_OPENBLAS
      impls.push_back(dense_implementation("openblas", w0));
#endif
      const int64_t kept_rows =
          std::max<int64_t>(1, std::llround((1 - sparsity) * static_cast<double>(sh.out)));
      impls.push_back(dense_implementation("shrunk", w0.narrow(0, 0, kept_rows).contiguous()));
      auto add_sparse = [&](const SparseFormat& f, const std::string& pattern, Tensor w) {
        const auto t0 = std::chrono::steady_clock::now();
        SparseMatrix m = SparseMatrix::from_dense(w, f, compress::IndexWidth::automatic, sh.name);
        // The batch-1 layout, decided (and built where it pays) here, so that it is timed with the rest;
        // panel_bytes 0: batch 1 runs from CSR.
        if (f.is_csr() && batch_one) m.arg(compress::PanelRequest::if_it_pays);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        conversions.push_back({{"shape", sh.name},
                               {"sparsity", sparsity},
                               {"format", f.name()},
                               {"pattern", pattern},
                               {"seconds", seconds},
                               {"bytes", m.bytes()},
                               {"panel_bytes", m.panel_bytes()},
                               {"dense_bytes", sh.out * sh.in * 4},
                               {"stored", m.stored()},
                               {"nnz", m.nnz()}});
        impls.push_back({.name = f.name(), .pattern = pattern, .weight = std::move(w), .matrix = std::move(m),
                         .sparse = true, .convert_seconds = seconds});
      };
      for (const SparseFormat& f : formats) {
        if (f.is_csr()) {
          add_sparse(f, "random", prune_lowest(w0, uniform_scores, sparsity));
          if (real.defined()) add_sparse(f, "magnitude", prune_lowest(real, magnitude_scores, sparsity));
        } else {
          const std::vector<float> block_scores =
              random_scores((sh.out / f.block_rows) * (sh.in / f.block_cols), 11 + f.block_rows * 17 + f.block_cols);
          add_sparse(f, "block" + f.name().substr(3),
                     prune_lowest(w0, block_scores, sparsity, f.block_rows, f.block_cols));
        }
      }
      for (int64_t batch : batches) {
        progress.step(fmt::format("{} {} b{}", sh.name, percent(sparsity), batch));
        // The activations: x (batch, in) for a Linear, cols (in, positions · batch) for a conv.
        const int64_t n = sh.conv() ? sh.positions * batch : batch;
        Tensor x = sh.conv() ? randn({sh.in, n}, {}, gen) : randn({batch, sh.in}, {}, gen);
        std::vector<Tensor> outputs(impls.size());
        std::vector<Variant> variants;
        for (size_t i = 0; i < impls.size(); ++i) {
          const Implementation& im = impls[i];
          Tensor& y = outputs[i];
          std::function<void()> fn;
          if (im.sparse) {
            fn = sh.conv() ? std::function<void()>([&] { y = compress::sparse_matmul(im.matrix, x); })
                           : std::function<void()>([&] { y = compress::sparse_linear(x, im.matrix); });
          } else if (im.name == "openblas") {
#ifdef MINIDL_HAVE_OPENBLAS
            y = sh.conv() ? empty({sh.out, n}) : empty({batch, sh.out});
            fn = [&] {
              if (sh.conv())  // y (out, n) = W (out, in) · X (in, n)
                openblas_gemm(sh.out, n, sh.in, im.weight.data_ptr<float>(), sh.in, x.data_ptr<float>(), n, false,
                              y.data_ptr<float>(), n);
              else  // y (batch, out) = x (batch, in) · Wᵀ
                openblas_gemm(batch, sh.out, sh.in, x.data_ptr<float>(), sh.in, im.weight.data_ptr<float>(), sh.in,
                              true, y.data_ptr<float>(), sh.out);
            };
#endif
          } else {
            fn = sh.conv() ? std::function<void()>([&] { y = matmul(im.weight, x); })
                           : std::function<void()>([&] { y = linear(x, im.weight); });
          }
          variants.push_back({im.label(), fn});
        }
        // Nothing is timed before every output is right.
        for (size_t i = 0; i < impls.size(); ++i) {
          variants[i].fn();
          const std::string who = fmt::format("{} at {} {} batch {}", impls[i].label(), sh.name, percent(sparsity), batch);
          if (sh.conv()) require_gemm(who.c_str(), impls[i].weight, x, outputs[i], 3);
          else require_gemm(who.c_str(), x, impls[i].weight.t(), outputs[i], 3);
        }
        const SideBySide r = run_side_by_side(variants, timing);
        const double dense_flops = 2.0 * static_cast<double>(sh.out) * sh.in * n;
        for (size_t i = 0; i < impls.size(); ++i) {
          const Implementation& im = impls[i];
          const double t = r.stats[i].median;
          const int64_t useful_terms = im.sparse ? im.matrix.nnz() : im.weight.numel();
          nlohmann::json jr = {{"shape", sh.name},
                               {"out", sh.out},
                               {"in", sh.in},
                               {"batch", batch},
                               {"columns", n},
                               {"sparsity", sparsity},
                               {"implementation", im.name},
                               {"pattern", im.pattern},
                               {"label", im.label()},
                               {"time", r.stats[i].to_json()},
                               {"speedup", {{"median", r.speedup[i]}, {"p10", r.speedup_p10[i]}, {"p90", r.speedup_p90[i]}}},
                               {"verdict", i == 0 ? "BASELINE" : verdict(r.speedup_p10[i], r.speedup_p90[i])},
                               {"effective_gflops", dense_flops / t / 1e9},
                               {"useful_gflops", 2.0 * static_cast<double>(useful_terms) * n / t / 1e9},
                               {"weight_bytes", im.sparse ? im.matrix.bytes() : im.weight.numel() * 4},
                               {"noisy", r.stats[i].noisy()}};
          if (im.sparse) jr["convert_seconds"] = im.convert_seconds;
          results.push_back(jr);
          const auto key = std::make_tuple(sh.name, batch, im.label());
          if (i > 0) curves[key].push_back({sparsity, r.speedup[i]});
          if (std::find(labels_in_order.begin(), labels_in_order.end(), im.label()) == labels_in_order.end())
            labels_in_order.push_back(im.label());
          cells[key].push_back(fixed(r.speedup[i], 2) + "x" + (r.stats[i].noisy() ? "~" : ""));
        }
      }
    }
  }

  // The speed-up table: one row per shape, batch and implementation; one column per sparsity.
  std::vector<std::string> columns = {"shape", "batch", "implementation"};
  for (double sp : sparsities) columns.push_back(percent(sp));
  columns.push_back("crossover");
  Table table(
      fmt::format("Speed-up over minidl's dense GEMM (median of per-round ratios; ~ noisy), {} threads, "
                  "kernels: dense {}, sparse {}",
                  threads(), cpu::gemm_kernel_name(cpu::GemmKernel::best), compress::sparse_linear_kernel_name()),
      columns);
  nlohmann::json crossovers = nlohmann::json::array();
  for (const SweepShape& sh : shapes)
    for (int64_t batch : batches)
      for (const std::string& label : labels_in_order) {
        const auto key = std::make_tuple(sh.name, batch, label);
        if (!curves.count(key)) continue;
        const double c = crossover(curves[key]);
        const std::string cross = std::isnan(c) ? "none <= " + percent(sparsities.back()) : percent(c);
        std::vector<std::string> row = {sh.name, std::to_string(batch), label};
        for (const std::string& cell : cells[key]) row.push_back(cell);
        row.push_back(cross);
        table.add_row(row);
        crossovers.push_back({{"shape", sh.name}, {"batch", batch}, {"implementation", label},
                              {"crossover", std::isnan(c) ? nlohmann::json(nullptr) : nlohmann::json(c)},
                              {"text", cross}});
      }
  nlohmann::json j = {{"benchmark", "sparse"},
                      {"threads", threads()},
                      {"cpu", cpu::cpu_summary()},
                      {"dense_kernel", cpu::gemm_kernel_name(cpu::GemmKernel::best)},
                      {"sparse_kernel", compress::sparse_linear_kernel_name()},
                      {"sparsities", sparsities},
                      {"batches", batches},
                      {"results", results},
                      {"crossovers", crossovers},
                      {"conversions", conversions},
                      {"table", table.json()}};
  for (const RealWeight& r : real_weights_found) j["magnitude_from"][r.shape] = r.from;
#ifdef MINIDL_HAVE_OPENBLAS
  j["openblas_core"] = openblas_get_corename();
  j["openblas_threads"] = blas_threads;
#endif
  if (!s.out.empty()) write_file_atomically(s.out, j.dump(1) + "\n", "bench sparse");
#ifdef MINIDL_HAVE_OPENBLAS
  if (!o.json) print_openblas_notes();
#endif
  emit(table, j, o);
  if (!o.json)
    for (const RealWeight& r : real_weights_found)
      std::printf("csr (magnitude) on %s: %s, its smallest weights zeroed\n", r.shape.c_str(), r.from.c_str());
  // Which CSR matrices ran batch 1 by loads, not panels (spmv_panels_pay: the
  // panels' padding did not pay); panel_bytes 0 in the JSON says the same.
  if (!o.json && batch_one && cpu::spmm_kernel_supported(cpu::SpmmKernel::avx512_panels, SparseMatrixArg{})) {
    std::string declined;
    for (const nlohmann::json& c : conversions)
      if (c["format"] == "csr" && c["panel_bytes"] == 0)
        declined += fmt::format("{}{} at {:g}%{}", declined.empty() ? "" : ", ", c["shape"].get<std::string>(),
                                100 * c["sparsity"].get<double>(), c["pattern"] == "random" ? "" : " (magnitude)");
    if (!declined.empty())
      std::printf("batch 1 by loads, where the panels did not pay (or MINIDL_SPMV said so): %s\n", declined.c_str());
  }
  if (!o.json && !s.out.empty())
    std::printf("wrote %s (plot it: python3 tools/bench/plot_sparse.py %s sparse.png)\n", s.out.c_str(),
                s.out.c_str());
  return 0;
}

// The GPU sweep: Linear shapes, CSR on the random pattern (what unstructured
// pruning leaves), against cuBLAS dense and the structurally shrunk layer.
int bench_sparse_cuda(const SparseSweepOptions& s, const CommonOptions& o) {
  NoGradGuard no_grad;
  if (!s.out.empty()) prepare_output(s.out, "bench sparse --out");
  const Device dev(o.device);
  if (!cuda::is_available()) throw Error("bench sparse --device " + o.device + ": " + cuda::unavailable_reason());
  const cuda::DeviceInfo info = cuda::device_info(dev.index);
  std::vector<std::string> shape_names = s.shapes;
  std::vector<int64_t> batches = s.batches;
  std::vector<double> sparsities = s.sparsities;
  if (shape_names.empty())
    shape_names = s.quick ? std::vector<std::string>{"1024x1024", "4096x4096"}
                          : std::vector<std::string>{"512x784", "1024x1024", "4096x4096", "3072x768", "768x3072"};
  if (batches.empty()) batches = s.quick ? std::vector<int64_t>{1, 256} : std::vector<int64_t>{1, 32, 256, 2048};
  if (sparsities.empty())
    sparsities = s.quick ? std::vector<double>{0, 0.5, 0.9, 0.99}
                         : std::vector<double>{0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99};
  for (const std::string& f : s.formats)
    MINIDL_CHECK(f == "csr", "bench sparse --device {}: the GPU kernels take CSR only, not {}", o.device, f);
  MINIDL_CHECK(s.weights.empty(), "bench sparse --device {}: --weights (the magnitude pattern) is CPU only", o.device);
  std::sort(sparsities.begin(), sparsities.end());
  std::vector<SweepShape> shapes;
  for (const std::string& n : shape_names) {
    shapes.push_back(parse_sweep_shape(n));
    MINIDL_CHECK(!shapes.back().conv(), "bench sparse --device {}: on a GPU the sweep takes Linear shapes (OUTxIN), "
                 "not {}", o.device, n);
  }
  std::vector<std::string> labels = {"cuBLAS dense", "shrunk (cuBLAS)", "csr hand-written"};
  if (cuda::have_cusparse()) labels.push_back("csr cuSPARSE");
  if (!o.json)
    std::printf("GPU %s (sm_%d%d), %d SMs; CUDA events%s\n", info.name.c_str(), info.major, info.minor,
                info.multiprocessors, o.cold ? ", L2 flushed" : "");

  nlohmann::json results = nlohmann::json::array();
  std::map<std::tuple<std::string, int64_t, std::string>, std::vector<Point>> curves;
  std::map<std::tuple<std::string, int64_t, std::string>, std::vector<std::string>> cells;
  Progress progress("bench sparse --device cuda", static_cast<int64_t>(shapes.size() * sparsities.size()));
  for (const SweepShape& sh : shapes) {
    Generator gen(static_cast<uint64_t>(sh.out * 131 + sh.in));
    const Tensor w0 = randn({sh.out, sh.in}, {}, gen) * (1.0 / std::sqrt(static_cast<double>(sh.in)));
    const std::vector<float> scores = random_scores(sh.out * sh.in, 7);
    for (double sparsity : sparsities) {
      progress.step(fmt::format("{} {}", sh.name, percent(sparsity)));
      const Tensor pruned = prune_lowest(w0, scores, sparsity);
      const int64_t kept_rows = std::max<int64_t>(1, std::llround((1 - sparsity) * static_cast<double>(sh.out)));
      const Tensor shrunk = w0.narrow(0, 0, kept_rows).contiguous();
      const SparseMatrix matrix = SparseMatrix::from_dense(pruned).to(dev);
      const Tensor d_pruned = pruned.to(dev), d_shrunk = shrunk.to(dev);
      for (int64_t batch : batches) {
        const Tensor x = randn({batch, sh.in}, {}, gen), dx = x.to(dev);
        Tensor y_dense, y_shrunk, y_hand, y_cusparse;
        std::vector<Variant> variants = {
            {labels[0], [&] { y_dense = linear(dx, d_pruned); }},
            {labels[1], [&] { y_shrunk = linear(dx, d_shrunk); }},
            {labels[2], [&] {
               y_hand = compress::sparse_linear(dx, matrix, {}, Activation::none, cpu::SpmmKernel::best,
                                                cuda::SpmmKernel::handwritten);
             }}};
        if (cuda::have_cusparse())
          variants.push_back({labels[3], [&] {
                                y_cusparse = compress::sparse_linear(dx, matrix, {}, Activation::none,
                                                                     cpu::SpmmKernel::best, cuda::SpmmKernel::cusparse);
                              }});
        // Nothing is timed before every output is right (Freivalds in f64 on the CPU).
        for (const Variant& v : variants) v.fn();
        const std::string at = fmt::format("at {} {} batch {}", sh.name, percent(sparsity), batch);
        require_gemm(("cuBLAS dense " + at).c_str(), x, pruned.t(), y_dense.to(kCPU), 3);
        require_gemm(("shrunk " + at).c_str(), x, shrunk.t(), y_shrunk.to(kCPU), 3);
        require_gemm(("csr hand-written " + at).c_str(), x, pruned.t(), y_hand.to(kCPU), 3);
        if (y_cusparse.defined()) require_gemm(("csr cuSPARSE " + at).c_str(), x, pruned.t(), y_cusparse.to(kCPU), 3);
        const SideBySide r = run_side_by_side(variants, to_options(o), timer_for(o));
        for (size_t i = 0; i < variants.size(); ++i) {
          const double t = r.stats[i].median;
          results.push_back({{"shape", sh.name},
                             {"batch", batch},
                             {"sparsity", sparsity},
                             {"implementation", labels[i]},
                             {"time", r.stats[i].to_json()},
                             {"speedup", {{"median", r.speedup[i]}, {"p10", r.speedup_p10[i]}, {"p90", r.speedup_p90[i]}}},
                             {"verdict", i == 0 ? "BASELINE" : verdict(r.speedup_p10[i], r.speedup_p90[i])},
                             {"effective_gflops", 2.0 * static_cast<double>(sh.out) * sh.in * batch / t / 1e9},
                             {"noisy", r.stats[i].noisy()}});
          const auto key = std::make_tuple(sh.name, batch, labels[i]);
          if (i > 0) curves[key].push_back({sparsity, r.speedup[i]});
          cells[key].push_back(i == 0 ? fixed(t * 1e6, 1) + " us" : fixed(r.speedup[i], 2) + "x" +
                                                                         (r.stats[i].noisy() ? "~" : ""));
        }
      }
    }
  }
  std::vector<std::string> columns = {"shape", "batch", "implementation"};
  for (double sp : sparsities) columns.push_back(percent(sp));
  columns.push_back("crossover");
  Table table(fmt::format("Sparse Linear on {}: dense time, then speed-up over cuBLAS dense (median of per-round "
                          "ratios; ~ noisy), CUDA events",
                          info.name),
              columns);
  nlohmann::json crossovers = nlohmann::json::array();
  for (const SweepShape& sh : shapes)
    for (int64_t batch : batches)
      for (const std::string& label : labels) {
        const auto key = std::make_tuple(sh.name, batch, label);
        std::vector<std::string> row = {sh.name, std::to_string(batch), label};
        for (const std::string& cell : cells[key]) row.push_back(cell);
        if (label == labels[0]) {
          row.push_back("");
        } else {
          const double c = crossover(curves[key]);
          row.push_back(std::isnan(c) ? "none <= " + percent(sparsities.back()) : percent(c));
          crossovers.push_back({{"shape", sh.name}, {"batch", batch}, {"implementation", label},
                                {"crossover", std::isnan(c) ? nlohmann::json(nullptr) : nlohmann::json(c)}});
        }
        table.add_row(row);
      }
  nlohmann::json j = {{"benchmark", "sparse"},       {"device", info.name},     {"sparsities", sparsities},
                      {"batches", batches},          {"results", results},      {"crossovers", crossovers},
                      {"table", table.json()}};
  if (!s.out.empty()) write_file_atomically(s.out, j.dump(1) + "\n", "bench sparse");
  emit(table, j, o);
  return 0;
}

}  // namespace minidl::bench
