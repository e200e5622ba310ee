// tools/bench/cuda.cpp — the GPU benchmarks: `minidl bench gemm --device cuda`
// and `minidl bench loss --device cuda`.
//
// Timed with CUDA events (cuda::time_with_events) around each call; with --cold
// the L2 cache is flushed before every timed run. Every result is checked
// against the CPU before anything is timed: a benchmark never times a wrong answer.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "minidl.h"
#include "tools/bench/benchmark.h"
#include "tools/bench/commands.h"
#include "tools/bench/common.h"

namespace minidl::bench {

namespace {

Device cuda_device(const CommonOptions& o) {
  const Device d(o.device);
  if (!d.is_cuda()) throw Error("bench: --device " + o.device + " is not a CUDA device");
  if (!cuda::is_available()) throw Error("bench --device " + o.device + ": " + cuda::unavailable_reason());
  return d;
}

void print_device(const cuda::DeviceInfo& info) {
  std::printf("GPU %s (sm_%d%d), %d SMs at %.0f MHz, %.1f GiB; fp32 peak %.1f TFLOP/s (128 lanes x 2 x SMs x clock)\n",
              info.name.c_str(), info.major, info.minor, info.multiprocessors, info.clock_khz / 1e3,
              info.total_memory / double(1 << 30), info.fp32_peak_flops() / 1e12);
}

}  // namespace

int bench_gemm_cuda(const std::vector<std::string>& shapes, const CommonOptions& o) {
  const Device dev = cuda_device(o);
  const cuda::DeviceInfo info = cuda::device_info(dev.index);
  if (!o.json) print_device(info);
  // The variants: cuBLAS three ways (when this build has it), then every
  // hand-written version. `version` 0 marks a cuBLAS one; `tolerance` is its
  // check's (TF32 and bf16 round their inputs to 10 and 7 mantissa bits).
  struct Kind {
    std::string name;
    cuda::GemmKernel kernel;
    int version;
    double tolerance;
  };
  std::vector<Kind> kinds;
  if (cuda::have_cublas())
    kinds = {{"cuBLAS fp32", cuda::GemmKernel::cublas, 0, 0},
             {"cuBLAS TF32", cuda::GemmKernel::cublas_tf32, 0, 5e-3},
             {"cuBLAS bf16", cuda::GemmKernel::cublas_bf16, 0, 3e-2}};
  else if (!o.json)
    std::printf("(this build has no cuBLAS: the hand-written versions only, against v1)\n");
  for (int v = 1; v <= cuda::kSgemmVersions; ++v)
    kinds.push_back({fmt::format("hand-written v{}", v), cuda::GemmKernel::handwritten, v, 0});
  std::vector<std::string> columns = {"M x N x K"};
  for (const Kind& k : kinds) columns.push_back(k.name + " TFLOP/s");
  const std::string base = kinds.front().name;  // what the ratios are against
  columns.push_back("best hand-written / " + base);
  columns.push_back(base + " / fp32 peak");
  Table table(fmt::format("SGEMM on {}, CUDA events{}", info.name, o.cold ? ", L2 flushed" : ""), columns);
  nlohmann::json results = nlohmann::json::array();
  for (const std::string& shape : shapes) {
    const std::vector<int64_t> mnk = parse_sizes(shape, 3, "gemm", "MxNxK, e.g. 4096x4096x4096");
    const int64_t M = mnk[0], N = mnk[1], K = mnk[2];
    Generator gen(static_cast<uint64_t>(M * 31 + N * 7 + K));
    const Tensor A = randn({M, K}, {}, gen), B = randn({K, N}, {}, gen);
    const Tensor dA = A.to(dev), dB = B.to(dev);
    std::vector<Tensor> C;
    std::vector<Variant> variants;
    for (const Kind& k : kinds) {
      C.push_back(zeros({M, N}, {.dtype = DType::f32, .device = dev}));
      const TensorArg a = dA.arg(), b = dB.arg(), c = C.back().arg();
      if (k.version == 0)
        variants.push_back({k.name, [=] { cuda::gemm(M, N, K, 1.0, a, b, 0.0, c, k.kernel); }});
      else
        variants.push_back({k.name, [=] { cuda::sgemm_handwritten(k.version, M, N, K, 1.0f, a, b, 0.0f, c); }});
    }
    // Each result checked (Freivalds, in f64 on the CPU) before anything is timed.
    for (size_t i = 0; i < variants.size(); ++i) {
      variants[i].fn();
      const Tensor host = C[i].to(kCPU);
      if (kinds[i].tolerance > 0) {
        Generator g2(3);
        const Tensor r = randn({N, 2}, {.dtype = DType::f64}, g2);
        require_close("gemm", fmt::format("{} at {}", kinds[i].name, shape), matmul(host.to(DType::f64), r),
                      matmul(A.to(DType::f64), matmul(B.to(DType::f64), r)), kinds[i].tolerance);
      } else {
        require_gemm(kinds[i].name.c_str(), A, B, host, 1);
      }
    }
    const double flops = 2.0 * static_cast<double>(M) * N * K;
    SideBySide r = run_side_by_side(variants, to_options(o), timer_for(o));
    std::vector<std::string> row = {shape};
    nlohmann::json jr = {{"shape", {M, N, K}}, {"flops", flops}};
    for (size_t v = 0; v < variants.size(); ++v) {
      const double tflops = flops / r.stats[v].median / 1e12;
      row.push_back(fixed(tflops, 2) + (r.stats[v].noisy() ? " (noisy)" : ""));
      jr[kinds[v].name] = r.stats[v].to_json();
      jr[kinds[v].name]["throughput"] = throughput_json(r.stats[v], {.flops = flops});
    }
    // speedup[v] = t(first variant) / t(v) per round: a hand-written version's share of it.
    double best_hand = 0;
    for (size_t v = 0; v < variants.size(); ++v)
      if (kinds[v].version > 0) best_hand = std::max(best_hand, r.speedup[v]);
    row.push_back(fixed(100 * best_hand, 1) + "%");
    const double base_share = flops / r.stats[0].median / info.fp32_peak_flops();
    row.push_back(fixed(100 * base_share, 1) + "%");
    jr["baseline"] = base;
    jr["best_handwritten_over_baseline"] = best_hand;
    jr["baseline_over_peak"] = base_share;
    table.add_row(row);
    results.push_back(jr);
  }
  nlohmann::json j = {{"benchmark", "gemm"},
                      {"device", info.name},
                      {"fp32_peak_flops", info.fp32_peak_flops()},
                      {"results", results},
                      {"table", table.json()}};
  emit(table, j, o);
  return 0;
}

// The fused loss in the row layout its width gets, beside the other layout
// forced (is the switch at 1024 columns in the right place on this GPU?), the
// composed ops, and a device-to-device copy of the logits as the ceiling.
int bench_loss_cuda(const std::vector<std::string>& shapes, const CommonOptions& o) {
  const Device dev = cuda_device(o);
  const cuda::DeviceInfo info = cuda::device_info(dev.index);
  if (!o.json) print_device(info);
  Table table(fmt::format("fused log_softmax + NLL (cross_entropy), forward + backward, f32, on {}", info.name),
              {"N x C", "fused", "its layout", "other layout (speed vs its)", "composed", "speed-up", "fused GB/s",
               "copy GB/s", "fused / copy"});
  nlohmann::json rows = nlohmann::json::array();
  Generator gen(9);
  const cuda::KeepRowLayout keep;  // the layouts forced below are undone on the way out
  auto layout_name = [](cuda::RowLayout l) { return l == cuda::RowLayout::warp ? "warp per row" : "block per row"; };
  for (const std::string& spec : shapes) {
    const std::vector<int64_t> nc = parse_sizes(spec, 2, "loss", "NxC, e.g. 4096x32000");
    const int64_t N = nc[0], C = nc[1];
    // What the launcher picks at this width (cuda/softmax.cu), and the other one.
    const cuda::RowLayout own = cuda::automatic_row_layout(C);
    const cuda::RowLayout other = own == cuda::RowLayout::warp ? cuda::RowLayout::block : cuda::RowLayout::warp;
    const Tensor host_logits = randn({N, C}, {}, gen), target_host = randint(0, C, {N}, {}, gen);
    Tensor logits = host_logits.to(dev).requires_grad_();
    const Tensor target = target_host.to(dev);
    {  // the GPU's loss and gradient, in both layouts, against the CPU's before timing
      Tensor h = host_logits.detach().to(DType::f64).requires_grad_();
      Tensor lh = cross_entropy(h, target_host);
      lh.backward();
      for (cuda::RowLayout layout : {own, other}) {
        cuda::set_row_layout(layout);
        const std::string what = fmt::format("cuda cross_entropy ({}) at {}", layout_name(layout), spec);
        Tensor ld = cross_entropy(logits, target);
        require_close("loss", what, ld.to(kCPU), lh, 1e-5);
        ld.backward();
        require_close("loss", what + ", its gradient", logits.grad().to(kCPU), h.grad(), 1e-5);
        logits.set_grad(Tensor());
      }
    }
    auto step = [&](cuda::RowLayout layout, auto loss) {
      return [&, layout, loss] {
        cuda::set_row_layout(layout);
        loss().backward();
        logits.set_grad(Tensor());
      };
    };
    auto fused = [&] { return cross_entropy(logits, target); };
    // The yardstick: a device-to-device copy of the logits (read once, write once).
    Tensor copy_dst = empty({N, C}, {.dtype = DType::f32, .device = dev});
    const double bytes = 4.0 * static_cast<double>(N) * C;
    SideBySide r = run_side_by_side(
        {{"fused", step(own, fused)},
         {"fused, other layout", step(other, fused)},
         {"composed", step(cuda::RowLayout::automatic, [&] { return nll_loss(log_softmax(logits, 1), target); })},
         {"copy", [&] { copy_dst.copy_(logits.detach()); }}},
        to_options(o), timer_for(o));
    // The fused forward reads the logits; the backward reads them and writes the
    // gradient: three passes over N·C floats at the least.
    const double fused_gbs = 3 * bytes / r.stats[0].median / 1e9, copy_gbs = 2 * bytes / r.stats[3].median / 1e9;
    table.add_row({spec, format_seconds(r.stats[0].median), layout_name(own),
                   fmt::format("{} ({}x)", format_seconds(r.stats[1].median), fixed(r.speedup[1], 2)),
                   format_seconds(r.stats[2].median), fixed(1.0 / r.speedup[2], 2) + "x", fixed(fused_gbs, 0),
                   fixed(copy_gbs, 0), fixed(100 * fused_gbs / copy_gbs, 1) + "%"});
    rows.push_back({{"shape", {N, C}},
                    {"layout", layout_name(own)},
                    {"fused", r.stats[0].to_json()},
                    {"fused_other_layout", r.stats[1].to_json()},
                    {"other_layout", layout_name(other)},
                    {"composed", r.stats[2].to_json()},
                    {"copy", r.stats[3].to_json()},
                    {"fused_gb_per_s", fused_gbs},
                    {"copy_gb_per_s", copy_gbs}});
  }
  nlohmann::json j = {{"benchmark", "loss"}, {"device", info.name}, {"results", rows}, {"table", table.json()}};
  emit(table, j, o);
  return 0;
}

}  // namespace minidl::bench
