#include "tools/bench/commands.h"

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <sstream>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "compress/quantize.h"
#include "core/file.h"
#include "minidl.h"
#include "nn/train.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"
#include "tools/bench/benchmark.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "tools/bench/common.h"


namespace minidl::bench {

Options to_options(const CommonOptions& o) {
  // On a GPU --cold flushes the L2 in timer_for(); the CPU cache sweep would mean nothing there.
  return {.warmup = o.warmup, .min_runs = o.min_runs, .min_seconds = o.min_seconds,
          .cold = o.cold && !Device(o.device).is_cuda()};
}

Timer timer_for(const CommonOptions& o) {
  const Device device(o.device);
  if (!device.is_cuda()) return host_timer;
  return [cold = o.cold, index = device.index](const std::function<void()>& fn) {
    if (cold) cuda::flush_l2(index);
    return cuda::time_with_events(fn);
  };
}

std::string timed_on(const CommonOptions& o) {
  const Device device(o.device);
  return device.is_cuda() ? cuda::device_info(device.index).name + ", CUDA events"
                          : fmt::format("{} threads", threads());
}

int threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void emit(const Table& t, nlohmann::json j, const CommonOptions& o) {
  j["cold"] = o.cold;
  write_json_out(j, o);
  if (o.json) std::cout << j.dump() << std::endl;
  else if (o.markdown) std::cout << t.markdown();
  else if (o.csv) std::cout << t.csv();
  else std::cout << t.text();
  if (o.cold && !o.json && !o.csv) std::cout << "(cold: caches flushed before every timed run)\n";
}

void write_json_out(const nlohmann::json& j, const CommonOptions& o) {
  if (!o.json_out.empty()) write_file_atomically(o.json_out, j.dump() + "\n", "bench --json-out");
}

// ---- every benchmark checks its result before it times anything

// max |got − want| / max |want| (the error relative to the output's scale).
double relative_error(const Tensor& got, const Tensor& want) {
  NoGradGuard no_grad;
  Tensor g = got.to(DType::f64), w = want.to(DType::f64);
  const double err = max(abs(sub(g, w))).item(), scale = max(abs(w)).item();
  return err / std::max(scale, 1e-30);
}

// A benchmark never prints a time for a wrong result.
void require_close(const char* bench, const std::string& what, const Tensor& got, const Tensor& want,
                   double tolerance) {
  const double e = relative_error(got, want);
  if (!(e <= tolerance))
    throw Error(fmt::format("bench {}: {} is wrong (relative error {:.3g} against the float64 reference, allowed "
                            "{:.1g}); refusing to time it",
                            bench, what, e, tolerance));
}

// Freivalds' check of C = A·B in O(n²): C·r against A·(B·r) for a random r, in f64.
void require_gemm(const char* who, const Tensor& A, const Tensor& B, const Tensor& C, uint64_t seed) {
  Generator gen(seed);
  Tensor r = randn({B.size(1), 2}, {.dtype = DType::f64}, gen);
  Tensor A64 = A.to(DType::f64), B64 = B.to(DType::f64);
  require_close("gemm", fmt::format("{}'s C at {}x{}x{}", who, A.size(0), B.size(1), A.size(1)),
                matmul(C.to(DType::f64), r), matmul(A64, matmul(B64, r)), 1e-4);
}

// The model's logits (and, with `labels`, its first parameter's gradient) in f32
// against an f64 copy of the same model: the f32 fast kernels (packed GEMM, conv,
// pooling) against the f64 reference loops.
void require_model(const char* bench, nn::Module& model, const std::string& model_name, const Tensor& x,
                   const Tensor& labels) {
  auto ref = nn::build_model(model_name);
  ref->load_state_dict(model.state_dict());
  ref->to(DType::f64);
  ref->train(model.is_training());
  const bool backward = labels.defined();
  Tensor y = model.forward(x), y64 = ref->forward(x.to(DType::f64));
  require_close(bench, model_name + "'s logits", y, y64, 1e-3);
  if (!backward) return;
  model.zero_grad(), ref->zero_grad();
  cross_entropy(y, labels).backward();
  cross_entropy(y64, labels).backward();
  const auto p = model.named_parameters(), p64 = ref->named_parameters();
  for (size_t i = 0; i < p.size(); ++i)
    require_close(bench, fmt::format("{}'s gradient of {}", model_name, p[i].first), p[i].second.grad(),
                  p64[i].second.grad(), 1e-3);
  model.zero_grad();
}

#ifdef MINIDL_HAVE_OPENBLAS
void openblas_gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
                   bool b_transposed, float* c, int64_t ldc) {
  auto i = [](int64_t v) { return static_cast<int>(v); };
  if (M == 1) {
    // c = a · B: B stored (N, K) is the product B·aᵀ as it lies; stored (K, N), its transpose.
    if (b_transposed)
      cblas_sgemv(kRowMajor, kNoTrans, i(N), i(K), 1.0f, b, i(ldb), a, 1, 0.0f, c, 1);
    else
      cblas_sgemv(kRowMajor, kTrans, i(K), i(N), 1.0f, b, i(ldb), a, 1, 0.0f, c, 1);
    return;
  }
  if (N == 1) {  // c = A · b, b a column: B's row stride is its element stride (ldb; K when transposed)
    cblas_sgemv(kRowMajor, kNoTrans, i(M), i(K), 1.0f, a, i(lda), b, b_transposed ? 1 : i(ldb), 0.0f, c, i(ldc));
    return;
  }
  cblas_sgemm(kRowMajor, kNoTrans, b_transposed ? kTrans : kNoTrans, i(M), i(N), i(K), 1.0f, a, i(lda), b, i(ldb), 0.0f,
              c, i(ldc));
}

int match_openblas_threads() {
  if (std::getenv("OPENBLAS_NUM_THREADS") == nullptr) openblas_set_num_threads(threads());
  return openblas_get_num_threads();
}

void print_openblas_notes() {
  const std::string core = openblas_get_corename();
  std::printf("OpenBLAS core: %s, %d threads\n", core.c_str(), openblas_get_num_threads());
  if (openblas_get_num_threads() != threads())
    std::printf(
        "note: OpenBLAS runs on %d threads and minidl on %d (OPENBLAS_NUM_THREADS is set): the ratios are not "
        "like for like\n",
        openblas_get_num_threads(), threads());
  // OpenBLAS's worker threads spin for 2^28 cycles (~0.1 s) after each call unless
  // told otherwise, taking a core from whichever variant is timed next.
  if (std::getenv("OPENBLAS_THREAD_TIMEOUT") == nullptr)
    std::printf("note: OPENBLAS_THREAD_TIMEOUT is unset: OpenBLAS threads spin ~0.1 s after each call and slow the "
                "next variant; set OPENBLAS_THREAD_TIMEOUT=4 for a fair side by side\n");
  // OpenBLAS 0.3.21 does not know Sapphire/Emerald Rapids and falls back to SSE3.
  if (core == "Prescott" && cpu::cpu_path_supported(cpu::CpuPath::avx2))
    std::printf("note: OpenBLAS chose its SSE3 'Prescott' kernels on this AVX2/AVX-512 CPU (it does not recognise "
                "it); set OPENBLAS_CORETYPE=SkylakeX (AVX-512) or Haswell (AVX2) for a fair comparison\n");
}
#endif

const char* verdict(double p10, double p90) {
  if (p10 > 1.03) return "FASTER";
  if (p90 < 1 / 1.03) return "SLOWER";
  if (p10 >= 1 / 1.03 && p90 <= 1.03) return "SAME";
  return "UNCLEAR";
}

std::string fixed(double v, int digits) {
  std::ostringstream os;
  os.precision(digits);
  os << std::fixed << v;
  return os.str();
}



int bench_gemm(const std::vector<std::string>& shapes, bool with_reference, const CommonOptions& o) {
  nlohmann::json results = nlohmann::json::array();
  std::vector<std::string> columns = {"M x N x K", "minidl GFLOP/s"};
  if (with_reference) columns.push_back("reference GFLOP/s");
#ifdef MINIDL_HAVE_OPENBLAS
  const std::string blas_core = openblas_get_corename();
  const int blas_threads = match_openblas_threads();
  columns.push_back("OpenBLAS GFLOP/s");
  columns.push_back("minidl / OpenBLAS");
#endif
  Table table(fmt::format("SGEMM, {} threads, kernel {}", threads(), cpu::gemm_kernel_name(cpu::GemmKernel::best)),
              columns);
  for (const std::string& shape : shapes) {
    const std::vector<int64_t> mnk = parse_sizes(shape, 3, "gemm", "MxNxK, e.g. 1024x1024x1024");
    const int64_t M = mnk[0], N = mnk[1], K = mnk[2];
    Generator gen(static_cast<uint64_t>(M * 31 + N * 7 + K));
    Tensor A = randn({M, K}, {}, gen), B = randn({K, N}, {}, gen), C = zeros({M, N});
    const double flops = 2.0 * static_cast<double>(M) * N * K;
    std::vector<Variant> variants = {
        {"minidl", [&] { cpu::gemm(M, N, K, 1.0, A.arg(), B.arg(), 0.0, C.arg()); }}};
    if (with_reference)
      variants.push_back({"reference", [&] {
                            cpu::gemm(M, N, K, 1.0, A.arg(), B.arg(), 0.0, C.arg(), cpu::GemmKernel::reference);
                          }});
#ifdef MINIDL_HAVE_OPENBLAS
    Tensor C2 = zeros({M, N});
    variants.push_back({"openblas", [&] {
                          openblas_gemm(M, N, K, A.data_ptr<float>(), K, B.data_ptr<float>(), N, false,
                                        C2.data_ptr<float>(), N);
                        }});
#endif
    // Each variant's C is checked once before anything is timed.
    for (const Variant& v : variants) v.fn();
    require_gemm("minidl", A, B, C, 1);
#ifdef MINIDL_HAVE_OPENBLAS
    require_gemm("OpenBLAS", A, B, C2, 2);
#endif
    SideBySide r = run_side_by_side(variants, to_options(o));
    std::vector<std::string> row = {shape};
    nlohmann::json jr = {{"shape", {M, N, K}}, {"flops", flops}};
    for (size_t v = 0; v < variants.size(); ++v) {
      row.push_back(fixed(flops / r.stats[v].median / 1e9, 1) + (r.stats[v].noisy() ? " (noisy)" : ""));
      jr[variants[v].name] = r.stats[v].to_json();
      jr[variants[v].name]["throughput"] = throughput_json(r.stats[v], {.flops = flops});
    }
#ifdef MINIDL_HAVE_OPENBLAS
    // speedup[i] = t(minidl) / t(i) per round; minidl / OpenBLAS throughput = its inverse.
    const double vs_blas = 1.0 / r.speedup.back();
    row.push_back(fixed(vs_blas, 2) + "x");
    jr["minidl_over_openblas"] = {{"median", vs_blas}, {"p10", 1.0 / r.speedup_p90.back()},
                                  {"p90", 1.0 / r.speedup_p10.back()}};
#endif
    table.add_row(row);
    results.push_back(jr);
  }
  nlohmann::json j = {{"benchmark", "gemm"}, {"threads", threads()},
                      {"kernel", cpu::gemm_kernel_name(cpu::GemmKernel::best)}, {"results", results},
                      {"table", table.json()}};
#ifdef MINIDL_HAVE_OPENBLAS
  j["openblas_core"] = blas_core;
  j["openblas_threads"] = blas_threads;
  if (!o.json) print_openblas_notes();
#else
  if (!o.json) std::printf("(built without OpenBLAS: install libopenblas-dev and reconfigure to compare)\n");
#endif
  emit(table, j, o);
  return 0;
}

int bench_train_step(const std::string& model_name, int64_t batch, int64_t batches, const std::string& data_dir,
                     bool raw, const CommonOptions& o) {
  using namespace minidl::nn;
  ImageDataset train = load_mnist_format(data_dir, "train").subset(batch * batches);
  DataLoader loader(train, {.batch_size = batch, .shuffle = false, .drop_last = true});
  loader.start_epoch(0);
  std::vector<Batch> fixed_batches;
  while (auto b = loader.next()) fixed_batches.push_back(*b);
  if (fixed_batches.empty()) throw Error("bench train-step: not enough images for one batch");

  Generator gen(0);
  auto model = build_model(model_name, gen);
  model->train();
  require_model("train-step", *model, model_name, fixed_batches[0].images.narrow(0, 0, std::min<int64_t>(batch, 8)),
                fixed_batches[0].labels.narrow(0, 0, std::min<int64_t>(batch, 8)));
  // On a GPU: the model and the batches move there, and its logits are checked
  // against the CPU's (which the f64 check above vouched for) before timing.
  const Device device(o.device);
  const Timer timer = timer_for(o);
  if (device.is_cuda()) {
    const Tensor x0 = fixed_batches[0].images;
    Tensor cpu_logits;
    {
      NoGradGuard no_grad;
      cpu_logits = (*model)(x0);
    }
    model->to(device);
    for (Batch& b : fixed_batches) b.images = b.images.to(device), b.labels = b.labels.to(device);
    NoGradGuard no_grad;
    require_close("train-step", model_name + "'s logits on " + o.device, (*model)(fixed_batches[0].images).to(kCPU),
                  cpu_logits, 1e-4);
  }
  AdamW opt(model->named_parameters(), {.lr = 1e-3});
  size_t next = 0;
  auto step = [&] {
    const Batch& b = fixed_batches[next++ % fixed_batches.size()];
    Tensor loss = cross_entropy((*model)(b.images), b.labels);
    opt.zero_grad();
    loss.backward();
    opt.step();
  };
  const std::string where = timed_on(o);
  Table table(fmt::format("training step: {}, batch {}, AdamW, {}", model_name, batch, where),
              {"model", "median", "p10", "p90", "samples/s"});
  auto add_row = [&](const std::string& name, const Stats& st) {
    table.add_row({name, format_seconds(st.median), format_seconds(st.p10), format_seconds(st.p90),
                   fixed(static_cast<double>(batch) / st.median, 0) + (st.noisy() ? " (noisy)" : "")});
  };
  nlohmann::json j = {{"benchmark", "train-step"}, {"model", model_name}, {"batch", batch}, {"threads", threads()},
                      {"device", o.device}};
  if (!o.graph) {
    Stats s = run(step, to_options(o), timer);
    add_row(model_name, s);
    j["stats"] = s.to_json();
    j["throughput"] = throughput_json(s, {.samples = static_cast<double>(batch)});
    if (raw) j["seconds"] = s.seconds;
  } else {
    // The same step captured once as a CUDA graph (on the first batch: a replay
    // repeats the captured buffers) and replayed, interleaved with the eager
    // step. What the graph saves is launch overhead: the CPU's time to queue the
    // step's kernels one by one.
    if (!device.is_cuda()) throw Error("bench train-step --graph: CUDA graphs need --device cuda");
    step();  // uncaptured first: index checks, the cache and cuBLAS warmed
    next = 0;
    cuda::Graph graph([&] {
      const Batch& b = fixed_batches[0];
      Tensor loss = cross_entropy((*model)(b.images), b.labels);
      opt.zero_grad();
      loss.backward();
      opt.step();
    });
    SideBySide r = run_side_by_side({{"eager", step}, {"graph", [&] { graph.replay(); }}}, to_options(o), timer);
    add_row(model_name + " eager", r.stats[0]);
    add_row(model_name + " CUDA graph", r.stats[1]);
    const double gain = r.speedup[1];
    j["eager"] = r.stats[0].to_json();
    j["graph"] = r.stats[1].to_json();
    j["graph_speedup"] = {{"median", gain}, {"p10", r.speedup_p10[1]}, {"p90", r.speedup_p90[1]}};
    if (!o.json)
      std::printf("the CUDA graph replays the step %.2fx as fast as launching it kernel by kernel%s\n", gain,
                  gain > 1.2 ? ": launch-bound (the GPU waits on the CPU queuing kernels)" : "");
  }
  j["table"] = table.json();
  emit(table, j, o);
  return 0;
}

Tensor real_images(const std::string& data_dir, int64_t count) {
  using namespace minidl::nn;
  ImageDataset set = load_mnist_format(data_dir, "t10k").subset(count);
  DataLoader loader(set, {.batch_size = count, .shuffle = false, .drop_last = false});
  loader.start_epoch(0);
  auto b = loader.next();
  if (!b) throw Error("bench: no images in " + data_dir);
  if (set.size == count) return b->images;
  // A test set smaller than the batch asked for (a user's own data): its images
  // again, in order, until there are `count` of them.
  std::vector<Tensor> copies(static_cast<size_t>((count + set.size - 1) / set.size), b->images);
  return cat(copies, 0).narrow(0, 0, count).contiguous();
}

int bench_infer(const std::string& model_name, const std::vector<int64_t>& batch_sizes, const std::string& data_dir,
                bool raw, const CommonOptions& o, bool int8) {
  using namespace minidl::nn;
  if (int8 && o.graph) throw Error("bench infer: --int8 and --graph time different pairs; pick one");
  Generator gen(0);
  auto model = build_model(model_name, gen);
  model->eval();
  int64_t largest = 1;
  for (int64_t b : batch_sizes) {
    if (b < 1) throw Error(fmt::format("bench infer: batch size {} must be positive", b));
    largest = std::max(largest, b);
  }
  Tensor images = real_images(data_dir, largest);
  const Device device(o.device);
  const std::string where = timed_on(o);
  Table table(fmt::format("inference: {}, eval mode, no grad, {}", model_name, where),
              {"batch", "median", "p10", "p90", "per sample", "samples/s"});
  nlohmann::json rows = nlohmann::json::array();
  const Options opts = to_options(o);
  // On a GPU a copy of the model runs there, its logits checked against the
  // CPU model's (which require_model vouches for) before timing.
  const auto copy_on = [](Module& m, const Device& where) {  // a copy of m, in eval mode, on `where`
    ModulePtr c = module_from_spec(m.spec());
    c->load_state_dict(m.state_dict());
    c->eval();
    c->to(where);
    return c;
  };
  const Timer timer = timer_for(o);
  const ModulePtr gpu_model = device.is_cuda() ? copy_on(*model, device) : nullptr;
  // --int8: the same model with every Linear int8 dynamic (quantized on the
  // CPU), timed beside the f32 one; on a GPU a copy moved there.
  ModulePtr int8_host, int8_timed;
  if (int8) {
    int8_host = copy_on(*model, kCPU);
    compress::quantize_dynamic(*int8_host);
    int8_timed = device.is_cuda() ? copy_on(*int8_host, device) : int8_host;
  }
  for (int64_t b : batch_sizes) {
    Tensor x = images.narrow(0, 0, b).contiguous();
    NoGradGuard no_grad;
    require_model("infer", *model, model_name, x, Tensor());
    Module& timed = gpu_model ? *gpu_model : *model;
    if (gpu_model) {
      const Tensor want = (*model)(x);
      x = x.to(device);
      require_close("infer", model_name + "'s logits on " + o.device, timed.forward(x).to(kCPU), want, 1e-4);
    }
    auto add_row = [&](const std::string& name, const Stats& st) {
      table.add_row({name, format_seconds(st.median), format_seconds(st.p10), format_seconds(st.p90),
                     format_seconds(st.median / static_cast<double>(b)),
                     fixed(static_cast<double>(b) / st.median, 0) + (st.noisy() ? " (noisy)" : "")});
    };
    nlohmann::json r = {{"batch", b}};
    if (int8) {
      // Checked first: the int8 model near the f32 one (its SQNR), and on a GPU
      // equal to the CPU's int8 model (the same bits, ops/quant_math.h).
      const Tensor x_host = x.to(kCPU);
      const Tensor want8 = (*int8_host)(x_host);
      const double sqnr = sqnr_db((*model)(x_host), want8);
      if (!(sqnr >= 20))
        throw Error(fmt::format("bench infer --int8: the int8 {}'s logits are {:.1f} dB from f32's (want >= 20); "
                                "not timing it",
                                model_name, sqnr));
      if (gpu_model)
        require_close("infer", model_name + "'s int8 logits on " + o.device, int8_timed->forward(x).to(kCPU), want8,
                      1e-6);
      SideBySide sb = run_side_by_side({{"f32", [&] { Tensor y = timed.forward(x); }},
                                        {"int8", [&] { Tensor y = int8_timed->forward(x); }}},
                                       opts, timer);
      add_row(std::to_string(b) + " f32", sb.stats[0]);
      add_row(std::to_string(b) + " int8 dynamic", sb.stats[1]);
      r["f32"] = sb.stats[0].to_json();
      r["int8"] = sb.stats[1].to_json();
      r["int8_sqnr_db"] = sqnr;
      r["int8_speedup"] = {{"median", sb.speedup[1]}, {"p10", sb.speedup_p10[1]}, {"p90", sb.speedup_p90[1]}};
      if (!o.json)
        std::printf("batch %lld: int8 dynamic runs the forward %.2fx as fast as f32 (p10-p90 %.2f-%.2f), logits "
                    "%.1f dB from f32's\n",
                    static_cast<long long>(b), sb.speedup[1], sb.speedup_p10[1], sb.speedup_p90[1], sqnr);
    } else if (!o.graph) {
      Stats s = run([&] { Tensor y = timed.forward(x); }, opts, timer);
      add_row(std::to_string(b), s);
      r["stats"] = s.to_json();
      r["throughput"] = throughput_json(s, {.samples = static_cast<double>(b)});
      if (raw) r["seconds"] = s.seconds;
    } else {
      // The forward captured once as a CUDA graph and replayed, interleaved with
      // the eager forward: at small batches the GPU waits on kernel launches.
      if (!gpu_model) throw Error("bench infer --graph: CUDA graphs need --device cuda");
      cuda::Graph graph([&] { Tensor y = timed.forward(x); });
      SideBySide sb = run_side_by_side({{"eager", [&] { Tensor y = timed.forward(x); }}, {"graph", [&] { graph.replay(); }}},
                                       opts, timer);
      add_row(std::to_string(b) + " eager", sb.stats[0]);
      add_row(std::to_string(b) + " CUDA graph", sb.stats[1]);
      r["eager"] = sb.stats[0].to_json();
      r["graph"] = sb.stats[1].to_json();
      r["graph_speedup"] = {{"median", sb.speedup[1]}, {"p10", sb.speedup_p10[1]}, {"p90", sb.speedup_p90[1]}};
      if (!o.json)
        std::printf("batch %lld: the CUDA graph replays the forward %.2fx as fast as launching it kernel by kernel%s\n",
                    static_cast<long long>(b), sb.speedup[1], sb.speedup[1] > 1.2 ? ": launch-bound" : "");
    }
    rows.push_back(r);
  }
  nlohmann::json j = {{"benchmark", "infer"}, {"model", model_name}, {"threads", threads()}, {"device", o.device},
                      {"results", rows},      {"table", table.json()}};
  emit(table, j, o);
  return 0;
}

int bench_conv(const std::vector<std::string>& shapes, const CommonOptions& o) {
  const Device device(o.device);
  const std::string where =
      device.is_cuda() ? fmt::format("{}, GEMM {}, CUDA events", cuda::device_info(device.index).name,
                                     cuda::gemm_kernel_name())
                       : fmt::format("{} threads, kernel {}", threads(), cpu::gemm_kernel_name(cpu::GemmKernel::best));
  Table table(fmt::format("conv2d (im2col + GEMM), f32, {}", where),
              {"shape", "forward", "GFLOP/s", "fwd + bwd", "GFLOP/s"});
  const Timer timer = timer_for(o);
  nlohmann::json rows = nlohmann::json::array();
  Generator gen(5);
  for (const std::string& spec : shapes) {
    const auto [N, C, H, W, O, K, stride, pad] = parse_conv_shape(spec);
    Conv2dOptions opts{.stride = {stride, stride}, .padding = {pad, pad}};
    Tensor x = randn({N, C, H, W}, {}, gen).requires_grad_();
    Tensor w = randn({O, C, K, K}, {}, gen).requires_grad_();
    Tensor b = randn({O}, {}, gen).requires_grad_();
    Tensor probe = conv2d(x.detach(), w.detach(), b.detach(), opts);
    Tensor gy = randn(probe.shape(), {}, gen);
    const double flops = 2.0 * static_cast<double>(probe.numel()) * C * K * K;  // one GEMM's worth
    {
      // Forward and the three gradients against the f64 convolution (reference GEMM loop).
      Tensor x64 = x.detach().to(DType::f64).requires_grad_(), w64 = w.detach().to(DType::f64).requires_grad_();
      Tensor b64 = b.detach().to(DType::f64).requires_grad_();
      Tensor y = conv2d(x, w, b, opts), y64 = conv2d(x64, w64, b64, opts);
      require_close("conv", spec + " forward", y, y64, 1e-4);
      y.backward(gy);
      y64.backward(gy.to(DType::f64));
      require_close("conv", spec + " input gradient", x.grad(), x64.grad(), 1e-4);
      require_close("conv", spec + " weight gradient", w.grad(), w64.grad(), 1e-4);
      require_close("conv", spec + " bias gradient", b.grad(), b64.grad(), 1e-4);
      if (device.is_cuda()) {
        // The same on the GPU, against the CPU's f32 results just checked.
        Tensor xd = x.detach().to(device).requires_grad_(), wd = w.detach().to(device).requires_grad_();
        Tensor bd = b.detach().to(device).requires_grad_();
        Tensor yd = conv2d(xd, wd, bd, opts);
        yd.backward(gy.to(device));
        require_close("conv", spec + " forward on " + o.device, yd.to(kCPU), y, 1e-4);
        require_close("conv", spec + " input gradient on " + o.device, xd.grad().to(kCPU), x.grad(), 1e-4);
        require_close("conv", spec + " weight gradient on " + o.device, wd.grad().to(kCPU), w.grad(), 1e-4);
        require_close("conv", spec + " bias gradient on " + o.device, bd.grad().to(kCPU), b.grad(), 1e-4);
        x = xd.detach().requires_grad_(), w = wd.detach().requires_grad_(), b = bd.detach().requires_grad_();
        gy = gy.to(device);
      }
    }
    Stats fwd = run(
        [&] {
          NoGradGuard no_grad;
          Tensor y = conv2d(x, w, b, opts);
        },
        to_options(o), timer);
    Stats both = run(
        [&] {
          Tensor y = conv2d(x, w, b, opts);
          y.backward(gy);
        },
        to_options(o), timer);
    table.add_row({spec, format_seconds(fwd.median), fixed(flops / fwd.median / 1e9, 1) + (fwd.noisy() ? " (noisy)" : ""),
                   format_seconds(both.median),
                   fixed(3 * flops / both.median / 1e9, 1) + (both.noisy() ? " (noisy)" : "")});
    rows.push_back({{"shape", spec},
                    {"forward", fwd.to_json()},
                    {"forward_backward", both.to_json()},
                    {"forward_gflops", flops / fwd.median / 1e9},
                    {"forward_backward_gflops", 3 * flops / both.median / 1e9}});
  }
  nlohmann::json j = {{"benchmark", "conv"}, {"threads", threads()}, {"device", o.device}, {"results", rows},
                      {"table", table.json()}};
  emit(table, j, o);
  return 0;
}

// `bench conv --int8`: the int8 convolution of dynamic quantization
// (quantized_conv2d) beside the f32 one, forward only, interleaved: where it
// pays, by the patch length C·k·k (compress::kMinInt8ConvPatch comes from this).
// A third column times the int8 kernel with its patches gathered into rows
// first (im2row), which the GEMM otherwise reads in place (ops/cpu/qconv.cpp).
int bench_conv_int8(const std::vector<std::string>& shapes, const CommonOptions& o) {
  MINIDL_CHECK(Device(o.device).is_cpu(), "bench conv --int8: the int8 convolution runs on the CPU only, not on {}",
               o.device);
  Table table(
      fmt::format("conv2d forward, f32 vs int8 dynamic (+ReLU), {} threads, GEMMs {} and {}", threads(),
                  cpu::gemm_kernel_name(cpu::GemmKernel::best), cpu::qgemm_kernel_name(cpu::QGemmKernel::best)),
      {"shape", "patch", "f32", "int8", "speed-up (p10-p90)", "int8 gathered", "in place vs gathered", "int8 vs f32"});
  const Timer timer = timer_for(o);
  nlohmann::json rows = nlohmann::json::array();
  Generator gen(6);
  NoGradGuard no_grad;
  for (const std::string& spec : shapes) {
    const auto [N, C, H, W, O, K, stride, pad] = parse_conv_shape(spec);
    const Conv2dOptions opts{.stride = {stride, stride}, .padding = {pad, pad}};
    // A ReLU's output, as a convolution after the first layer sees.
    const Tensor x = relu(randn({N, C, H, W}, {}, gen)), w = randn({O, C, K, K}, {}, gen) * 0.1;
    const Tensor b = randn({O}, {}, gen);
    const QuantizedWeight q = quantize_weight_int8(w);
    const Int8ConvWeight packed = pack_int8_conv_weight(q.values, q.scale);
    const Tensor y8 = quantized_conv2d(x, packed, b, opts, Activation::relu);
    {
      // Checked first: the int8 output against the f64 convolution of exactly
      // what it multiplies (x quantized as the op does, the dequantized weight).
      const auto xv = x.to_vector<float>();
      const cpu::QuantParams qp = cpu::choose_quant_params(xv.data(), N * C, H * W, H * W);
      std::vector<double> xd(xv.size());
      for (size_t i = 0; i < xv.size(); ++i)
        xd[i] = double(qp.scale) * (quantize_u8(xv[i], 1.0f / qp.scale, qp.zero_point) - qp.zero_point);
      const Tensor want =
          conv2d(from_vector<double>(xd, x.shape()), dequantize_weight(q.values, q.scale).to(DType::f64),
                 b.to(DType::f64), opts, Activation::relu);
      require_close("conv --int8", spec + " int8 forward", y8, want, 1e-4);
    }
    // And the f32 side it is timed against, against the f64 convolution of x and w.
    const Tensor y32 = conv2d(x, w, b, opts, Activation::relu);
    require_close("conv --int8", spec + " f32 forward", y32,
                  conv2d(x.to(DType::f64), w.to(DType::f64), b.to(DType::f64), opts, Activation::relu), 1e-4);
    // The gathered form, checked to give the same bits before it is timed.
    Shape y_shape;
    const Conv2dParams params =
        conv2d_params("bench conv --int8", x.shape(), w.shape(), b, opts, Activation::relu, y_shape);
    const Tensor y_gathered = empty(y_shape);
    auto gathered = [&] { run_quantized_conv2d(y_gathered, x, packed, b, params, nullptr, true); };
    gathered();
    MINIDL_CHECK(y_gathered.to_vector<float>() == y8.to_vector<float>(),
                 "bench conv --int8: {}: the gathered patches give other values than the in-place ones", spec);
    const double sqnr = sqnr_db(y32, y8);
    SideBySide sb =
        run_side_by_side({{"f32", [&] { Tensor y = conv2d(x, w, b, opts, Activation::relu); }},
                          {"int8", [&] { Tensor y = quantized_conv2d(x, packed, b, opts, Activation::relu); }},
                          {"int8 gathered", gathered}},
                         to_options(o), timer);
    table.add_row({spec, std::to_string(C * K * K), format_seconds(sb.stats[0].median),
                   format_seconds(sb.stats[1].median),
                   fmt::format("{:.2f}x ({:.2f}-{:.2f})", sb.speedup[1], sb.speedup_p10[1], sb.speedup_p90[1]),
                   format_seconds(sb.stats[2].median), fmt::format("{:.2f}x", sb.stats[2].median / sb.stats[1].median),
                   fmt::format("{:.1f} dB", sqnr)});
    rows.push_back({{"shape", spec},
                    {"patch", C * K * K},
                    {"f32", sb.stats[0].to_json()},
                    {"int8", sb.stats[1].to_json()},
                    {"int8_gathered", sb.stats[2].to_json()},
                    {"speedup", {{"median", sb.speedup[1]}, {"p10", sb.speedup_p10[1]}, {"p90", sb.speedup_p90[1]}}},
                    {"sqnr_db", sqnr}});
  }
  nlohmann::json j = {{"benchmark", "conv-int8"},
                      {"threads", threads()},
                      {"device", o.device},
                      {"results", rows},
                      {"table", table.json()}};
  emit(table, j, o);
  return 0;
}

// `bench conv --direct`: a first layer's convolution as the compiled plan runs it
// before an int8 convolution — the direct kernel, channels last
// (ops/cpu/conv_direct.cpp) — against im2col + GEMM, which writes channels first,
// alone and followed by the transpose to channels last that the next layer would
// otherwise pay. Forward with bias and ReLU, interleaved; the patch length
// C·k·k decides (cpu::kDirectConvMaxPatch comes from this).
int bench_conv_direct(const std::vector<std::string>& shapes, const CommonOptions& o) {
  MINIDL_CHECK(Device(o.device).is_cpu(), "bench conv --direct: the direct kernel runs on the CPU only, not on {}",
               o.device);
  Table table(fmt::format("conv2d forward (+ReLU), f32, {} threads: direct channels last ({}) vs im2col + GEMM ({})",
                          threads(), cpu::conv2d_direct_fast() ? "avx512" : "reference loop",
                          cpu::gemm_kernel_name(cpu::GemmKernel::best)),
              {"shape", "patch", "im2col", "im2col + transpose", "direct", "direct vs im2col", "vs + transpose",
               "direct, channels first", "vs im2col"});
  const Timer timer = timer_for(o);
  nlohmann::json rows = nlohmann::json::array();
  Generator gen(7);
  NoGradGuard no_grad;
  for (const std::string& spec : shapes) {
    const auto [N, C, H, W, O, K, stride, pad] = parse_conv_shape(spec);
    const Conv2dOptions opts{.stride = {stride, stride}, .padding = {pad, pad}};
    const Tensor x = randn({N, C, H, W}, {}, gen), w = randn({O, C, K, K}, {}, gen), b = randn({O}, {}, gen);
    Shape y_shape;
    const Conv2dParams p =
        conv2d_params("bench conv --direct", x.shape(), w.shape(), b, opts, Activation::relu, y_shape);
    const int64_t Ho = y_shape[2], Wo = y_shape[3];
    const Tensor y = empty(y_shape), y_last = empty({N, Ho, Wo, O}), y_direct = empty({N, Ho, Wo, O});
    cpu::DirectConvArgs a;
    a.x = x.data_ptr<float>(), a.N = N, a.C = C, a.H = H, a.W = W, a.O = O, a.kernel_h = a.kernel_w = K;
    a.params = p, a.w = w.data_ptr<float>(), a.bias = b.data_ptr<float>();
    a.y = y_direct.data_ptr<float>(), a.Hy = Ho, a.Wy = Wo;
    auto im2col = [&] { cpu::conv2d_forward(y.arg(), x.arg(), w.arg(), b.arg(), p); };
    const int64_t samples = N, channels = O;  // (clang's lambdas cannot capture a structured binding)
    auto im2col_last = [&] {
      im2col();
      cpu::to_channels_last(y_last.data_ptr<float>(), y.data_ptr<float>(), samples, channels, Ho * Wo);
    };
    auto direct = [&] { cpu::conv2d_direct(a); };
    const Tensor y_first = empty(y_shape);
    cpu::DirectConvArgs af = a;
    af.y = y_first.data_ptr<float>(), af.y_channels_first = true;
    auto direct_first = [&] { cpu::conv2d_direct(af); };
    // Both checked against the f64 convolution before anything is timed.
    const Tensor want = conv2d(x.to(DType::f64), w.to(DType::f64), b.to(DType::f64), opts, Activation::relu);
    im2col_last(), direct(), direct_first();
    require_close("conv --direct", spec + " im2col", y, want, 1e-4);
    require_close("conv --direct", spec + " direct", y_direct.permute({0, 3, 1, 2}), want, 1e-4);
    require_close("conv --direct", spec + " direct, channels first", y_first, want, 1e-4);
    SideBySide sb = run_side_by_side({{"im2col", im2col},
                                      {"im2col + transpose", im2col_last},
                                      {"direct", direct},
                                      {"direct, channels first", direct_first}},
                                     to_options(o), timer);
    table.add_row({spec, std::to_string(C * K * K), format_seconds(sb.stats[0].median),
                   format_seconds(sb.stats[1].median), format_seconds(sb.stats[2].median),
                   fmt::format("{:.2f}x ({:.2f}-{:.2f})", sb.speedup[2], sb.speedup_p10[2], sb.speedup_p90[2]),
                   fmt::format("{:.2f}x", sb.stats[1].median / sb.stats[2].median), format_seconds(sb.stats[3].median),
                   fmt::format("{:.2f}x ({:.2f}-{:.2f})", sb.speedup[3], sb.speedup_p10[3], sb.speedup_p90[3])});
    rows.push_back({{"shape", spec},
                    {"patch", C * K * K},
                    {"im2col", sb.stats[0].to_json()},
                    {"im2col_transpose", sb.stats[1].to_json()},
                    {"direct", sb.stats[2].to_json()},
                    {"direct_channels_first", sb.stats[3].to_json()},
                    {"speedup", {{"median", sb.speedup[2]}, {"p10", sb.speedup_p10[2]}, {"p90", sb.speedup_p90[2]}}}});
  }
  nlohmann::json j = {{"benchmark", "conv-direct"},
                      {"threads", threads()},
                      {"device", o.device},
                      {"results", rows},
                      {"table", table.json()}};
  emit(table, j, o);
  return 0;
}

int bench_loss(const std::vector<std::string>& shapes, const CommonOptions& o) {
  Table table(fmt::format("losses, forward + backward, f32, {} threads: fused row kernels vs composed ops", threads()),
              {"N x C", "cross_entropy fused", "composed", "speed-up", "kl_div_logits fused", "composed", "speed-up",
               "distillation fused", "composed", "speed-up", "vs fused pieces"});
  nlohmann::json rows = nlohmann::json::array();
  Generator gen(9);
  for (const std::string& spec : shapes) {
    const std::vector<int64_t> nc = parse_sizes(spec, 2, "loss", "NxC, e.g. 4096x1000");
    const int64_t N = nc[0], C = nc[1];
    Tensor logits = randn({N, C}, {}, gen).requires_grad_();
    Tensor teacher = mul(randn({N, C}, {}, gen), scalar_like(3.0, logits));
    Tensor target = randint(0, C, {N}, {}, gen);
    const double T = 4.0, alpha = 0.7;
    Tensor inv_t = scalar_like(1.0 / T, logits);
    // The distillation loss three ways: the fused kernel; the textbook composition
    // α T² kl_div(log_softmax(s/T), softmax(t/T)) + (1 − α) cross_entropy; and
    // minidl's two fused pieces, kl_div_logits and cross_entropy, added.
    auto kd_fused = [&] { return distillation_loss(logits, teacher, target, {.temperature = T, .alpha = alpha}); };
    auto kd_composed = [&](const Tensor& s, const Tensor& t, const Tensor& inv) {
      Tensor kl = kl_div(log_softmax(mul(s, inv), 1), softmax(mul(t, inv), 1), Reduction::batchmean);
      return add(mul(kl, scalar_like(alpha * T * T, kl)), mul(cross_entropy(s, target), scalar_like(1 - alpha, kl)));
    };
    auto kd_pieces = [&] {
      Tensor kl = kl_div_logits(logits, teacher, T);
      return add(mul(kl, scalar_like(alpha * T * T, kl)), mul(cross_entropy(logits, target), scalar_like(1 - alpha, kl)));
    };
    // Each variant: forward, backward into the logits, gradient cleared.
    auto step = [&](auto loss) {
      return [&, loss] {
        loss().backward();
        logits.set_grad(Tensor());
      };
    };
    {
      // The fused kernels against the f64 composed ops: values and gradients.
      Tensor l64 = logits.detach().to(DType::f64).requires_grad_(), t64 = teacher.to(DType::f64);
      Tensor inv64 = scalar_like(1.0 / T, l64);
      auto check = [&](const char* name, Tensor fused, Tensor composed) {
        require_close("loss", fmt::format("{} at {}", name, spec), fused, composed, 1e-5);
        fused.backward(), composed.backward();
        require_close("loss", fmt::format("{}'s gradient at {}", name, spec), logits.grad(), l64.grad(), 1e-5);
        logits.set_grad(Tensor()), l64.set_grad(Tensor());
      };
      check("cross_entropy", cross_entropy(logits, target), nll_loss(log_softmax(l64, 1), target));
      check("kl_div_logits", kl_div_logits(logits, teacher, T),
            kl_div(log_softmax(mul(l64, inv64), 1), softmax(mul(t64, inv64), 1), Reduction::batchmean));
      check("distillation_loss", kd_fused(), kd_composed(l64, t64, inv64));
    }
    SideBySide ce = run_side_by_side(
        {{"fused", step([&] { return cross_entropy(logits, target); })},
         {"composed", step([&] { return nll_loss(log_softmax(logits, 1), target); })}},
        to_options(o));
    SideBySide kl = run_side_by_side(
        {{"fused", step([&] { return kl_div_logits(logits, teacher, T); })},
         {"composed", step([&] {
            return kl_div(log_softmax(mul(logits, inv_t), 1), softmax(mul(teacher, inv_t), 1), Reduction::batchmean);
          })}},
        to_options(o));
    SideBySide kd = run_side_by_side({{"fused", step(kd_fused)},
                                      {"composed", step([&] { return kd_composed(logits, teacher, inv_t); })},
                                      {"fused pieces", step(kd_pieces)}},
                                     to_options(o));
    // speedup[1] = t(fused) / t(composed); fused over composed is its inverse.
    auto cell = [](const Stats& s) { return format_seconds(s.median) + (s.noisy() ? " (noisy)" : ""); };
    table.add_row({spec, cell(ce.stats[0]), cell(ce.stats[1]), fixed(1.0 / ce.speedup[1], 2) + "x", cell(kl.stats[0]),
                   cell(kl.stats[1]), fixed(1.0 / kl.speedup[1], 2) + "x", cell(kd.stats[0]), cell(kd.stats[1]),
                   fixed(1.0 / kd.speedup[1], 2) + "x", fixed(1.0 / kd.speedup[2], 2) + "x"});
    rows.push_back({{"shape", {N, C}},
                    {"cross_entropy", {{"fused", ce.stats[0].to_json()}, {"composed", ce.stats[1].to_json()},
                                       {"fused_speedup", 1.0 / ce.speedup[1]}}},
                    {"kl_div_logits", {{"fused", kl.stats[0].to_json()}, {"composed", kl.stats[1].to_json()},
                                       {"fused_speedup", 1.0 / kl.speedup[1]}}},
                    {"distillation_loss", {{"fused", kd.stats[0].to_json()}, {"composed", kd.stats[1].to_json()},
                                           {"fused_pieces", kd.stats[2].to_json()},
                                           {"fused_speedup", 1.0 / kd.speedup[1]},
                                           {"speedup_over_fused_pieces", 1.0 / kd.speedup[2]}}}});
  }
  nlohmann::json j = {{"benchmark", "loss"}, {"threads", threads()}, {"results", rows}, {"table", table.json()}};
  emit(table, j, o);
  return 0;
}

int bench_ops(int64_t batch, const CommonOptions& o) {
  // Single ops the training step spends time in, each timed alone (inference:
  // no graph) after its result is checked against the f64 computation on the
  // CPU. On a GPU the full sum and max are one long row each, which the
  // reduction splits across blocks (cuda/reduce_kernels.cuh).
  if (batch < 1 || batch > 65536) throw Error(fmt::format("bench ops: --batch must be 1 to 65536, got {}", batch));
  Generator gen(21);
  struct Case {
    std::string name;
    Tensor x;
    std::function<Tensor(const Tensor&)> op;
    double bytes;  // read + written, for the bandwidth column
  };
  auto pool = [](const Tensor& t) { return max_pool2d(t, {2, 2}, {2, 2}, {0, 0}); };
  Tensor p1 = randn({batch, 32, 28, 28}, {}, gen), p2 = randn({batch, 64, 14, 14}, {}, gen);
  Tensor r = randn({batch << 17}, {}, gen);  // 16M floats at batch 128
  const Device device(o.device);
  // The head's parameters on the device, and in f64 for the check.
  const Tensor h = randn({batch, 256}, {}, gen), w = randn({10, 256}, {}, gen), b = randn({10}, {}, gen);
  const Tensor w_on = w.to(device), b_on = b.to(device), w64 = w.to(DType::f64), b64 = b.to(DType::f64);
  auto head = [&](const Tensor& t) { return t.dtype() == DType::f64 ? linear(t, w64, b64) : linear(t, w_on, b_on); };
  const std::string floats =
      r.numel() % (1 << 20) == 0 ? fmt::format("{}M", r.numel() >> 20) : fmt::format("{}K", r.numel() >> 10);
  std::vector<Case> cases = {
      {fmt::format("max_pool2d 2x2 {}x32x28x28", batch), p1, pool, 4.0 * p1.numel() * 1.25},
      {fmt::format("max_pool2d 2x2 {}x64x14x14", batch), p2, pool, 4.0 * p2.numel() * 1.25},
      {"sum of " + floats + " floats", r, [](const Tensor& t) { return sum(t); }, 4.0 * r.numel()},
      {"max of " + floats + " floats", r, [](const Tensor& t) { return max(t); }, 4.0 * r.numel()},
      {fmt::format("relu {}x32x28x28", batch), p1, [](const Tensor& t) { return relu(t); }, 8.0 * p1.numel()},
      // The mlp's head: at batch 1 a few thousand multiply-adds, so what it
      // shows is an op's fixed cost (checks, allocation, threading decisions).
      {fmt::format("linear {}x256 -> 10", batch), h, head, 4.0 * (h.numel() + 256 * 10 + 10 + batch * 10)},
  };
  const std::string where = timed_on(o);
  Table table(fmt::format("single ops (forward, no grad), f32, {}", where), {"op", "median", "p10", "p90", "GB/s"});
  nlohmann::json rows = nlohmann::json::array();
  for (const Case& c : cases) {
    NoGradGuard no_grad;
    const Tensor x = c.x.to(device);
    require_close("ops", c.name + " on " + o.device, c.op(x).to(kCPU), c.op(c.x.to(DType::f64)), 1e-6);
    Stats s = run([&] { Tensor y = c.op(x); }, to_options(o), timer_for(o));
    table.add_row({c.name, format_seconds(s.median), format_seconds(s.p10), format_seconds(s.p90),
                   fixed(c.bytes / s.median / 1e9, 1) + (s.noisy() ? " (noisy)" : "")});
    rows.push_back({{"op", c.name}, {"stats", s.to_json()}, {"gb_per_s", c.bytes / s.median / 1e9}});
  }
  nlohmann::json j = {
      {"benchmark", "ops"}, {"threads", threads()}, {"device", o.device}, {"results", rows}, {"table", table.json()}};
  emit(table, j, o);
  return 0;
}

}  // namespace minidl::bench
