// tools/minidl.cpp — the `minidl` command: train and evaluate classifiers.
//
//   minidl train --model cnn --epochs 3 --batch 128 --opt adamw --lr 1e-3 --seed 0 --out runs/cnn.safetensors
//   minidl eval runs/cnn.safetensors
//
// Every subcommand has --help; --json prints one machine-readable object instead
// of the human output. Later issues add prune, distill, quantize and bench here.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <optional>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/file.h"
#include "core/parse.h"
#include "minidl.h"
#include "nn/train.h"
#include "ops/cpu/cpu_features.h"
#include "tools/bench/commands.h"
#include "tools/distill.h"
#include "tools/prune.h"
#include "tools/quantize.h"

using namespace minidl;
using namespace minidl::nn;

namespace {

constexpr const char* kVersion = "0.1.0";

// One line per epoch when stdout is not a terminal; a live bar when it is.
class Progress {
 public:
  Progress(bool json, int64_t batch) : live_(!json && ::isatty(STDOUT_FILENO)), batch_(batch) {}
  void update(int64_t epoch, int64_t epochs, int64_t b, int64_t steps, double loss, double acc, double sps) {
    if (!live_) return;
    const int width = 30;
    int filled = static_cast<int>(width * b / std::max<int64_t>(steps, 1));
    double eta = sps > 0 ? static_cast<double>(steps - b) * (static_cast<double>(batch_) / sps) : 0;
    std::printf("\repoch %lld/%lld [%s%s] %lld/%lld  loss %.4f  acc %5.1f%%  %6.0f samples/s  ETA %3.0fs ",
                static_cast<long long>(epoch), static_cast<long long>(epochs), std::string(filled, '#').c_str(),
                std::string(width - filled, '.').c_str(), static_cast<long long>(b), static_cast<long long>(steps), loss,
                100 * acc, sps, eta);
    std::fflush(stdout);
  }
  void end_line() {
    if (live_) std::printf("\n");
  }

 private:
  bool live_;
  int64_t batch_;  // for the ETA: batches left × batch / samples per second
};

// Classes are named when the data is Fashion-MNIST's; another --data set (MNIST
// digits, a user's own ten classes) gets its class numbers alone.
void print_eval(const EvalResult& r, const std::string& data_dir) {
  std::error_code ec;
  const bool fashion = std::filesystem::equivalent(data_dir, kFashionMnistDir, ec);
  auto name = [&](size_t c) { return fashion ? kFashionMnistClasses[c] : ""; };
  std::printf("test accuracy %.2f%%  loss %.4f  (%lld images, %.1f s)\n\n", 100 * r.accuracy, r.loss,
              static_cast<long long>(r.samples), r.seconds);
  std::printf("%-14s %8s\n", "class", "accuracy");
  for (size_t c = 0; c < r.per_class_accuracy.size(); ++c)
    std::printf("%zu %-12s %7.1f%%\n", c, name(c), 100 * r.per_class_accuracy[c]);
  std::printf("\nconfusion matrix (rows: true class, columns: predicted)\n%12s", "");
  for (int p = 0; p < 10; ++p) std::printf(" %5d", p);
  std::printf("\n");
  for (size_t t = 0; t < 10; ++t) {
    std::printf("%zu %-10.10s", t, name(t));
    for (int p = 0; p < 10; ++p) std::printf(" %5lld", static_cast<long long>(r.confusion[t][p]));
    std::printf("\n");
  }
}

int run_train(TrainConfig config, const std::string& out, const std::string& resume, bool json) {
  using Clock = std::chrono::steady_clock;
  auto start = Clock::now();
  // Every refusal before the 60 000 training images are read and unpacked.
  if (!out.empty()) prepare_output(out, "train --out");
  ImageDataset test = load_mnist_format(config.data_dir, "t10k");
  if (config.limit_test > 0) test = test.subset(config.limit_test);
  Trainer trainer(build_model(config), config);  // on config.device
  classes_of(trainer.model(), test, "train: " + config.model);  // the data's image size, before any epoch
  if (!resume.empty()) {
    trainer.resume(resume);
    MINIDL_CHECK(trainer.epochs_done() < config.epochs,
                 "train: {} has already trained {} epochs, and --epochs ({}) counts the total, those included; give "
                 "--epochs {} or more to go on",
                 resume, trainer.epochs_done(), config.epochs, trainer.epochs_done() + 1);
    if (!json) std::printf("resumed from %s after epoch %lld\n", resume.c_str(), static_cast<long long>(trainer.epochs_done()));
  }
  ImageDataset train = load_mnist_format(config.data_dir, "train");
  if (config.limit_train > 0) train = train.subset(config.limit_train);
  if (!json)
    std::printf("training %s (%lld parameters) on %lld images, testing on %lld; %s lr %g, batch %lld, %lld epochs\n",
                config.model.c_str(), static_cast<long long>(trainer.model().parameter_count()),
                static_cast<long long>(train.size), static_cast<long long>(test.size), config.opt.c_str(), config.lr,
                static_cast<long long>(config.batch), static_cast<long long>(config.epochs));

  Progress progress(json, config.batch);
  while (trainer.epochs_done() < config.epochs) {
    EpochResult r = trainer.run_epoch(train, test, [&](int64_t e, int64_t b, int64_t steps, double loss, double acc, double sps) {
      progress.update(e, config.epochs, b, steps, loss, acc, sps);
    });
    progress.end_line();
    if (!out.empty()) trainer.save(out);  // atomic: the previous epoch's file survives a crash here
    if (!json)
      std::printf("epoch %lld/%lld  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  %.1f s (%.0f samples/s)\n",
                  static_cast<long long>(r.epoch), static_cast<long long>(config.epochs), r.train_loss,
                  100 * r.train_accuracy, r.test.loss, 100 * r.test.accuracy, r.seconds, r.samples_per_second);
    std::fflush(stdout);
  }
  double total = std::chrono::duration<double>(Clock::now() - start).count();
  if (json) {
    nlohmann::json hist = nlohmann::json::array();
    for (const auto& e : trainer.history()) hist.push_back(to_json(e));
    const EpochResult& last = trainer.history().back();
    nlohmann::json j = {{"command", "train"},          {"config", config.to_json()},
                        {"accuracy", last.test.accuracy}, {"loss", last.test.loss},
                        {"epochs", hist},              {"seconds", total},
                        {"checkpoint", out}};
    std::cout << j.dump() << std::endl;
  } else {
    std::printf("done in %.1f s%s%s\n", total, out.empty() ? "" : "; checkpoint ", out.c_str());
  }
  return 0;
}

int run_eval(const std::string& checkpoint, const std::string& data_dir, int64_t batch, int64_t limit, Device device,
             bool json) {
  std::string arch;
  auto model = load_model(checkpoint, &arch);
  model->to(device);
  ImageDataset test = load_mnist_format(data_dir, "t10k");
  if (limit > 0) test = test.subset(limit);
  classes_of(*model, test, "eval: " + checkpoint);
  EvalResult r = evaluate(*model, test, batch);
  if (json) {
    nlohmann::json j = to_json(r);
    j["command"] = "eval";
    j["checkpoint"] = checkpoint;
    j["model"] = arch;
    std::cout << j.dump() << std::endl;
  } else {
    std::printf("%s: %s\n", checkpoint.c_str(), arch.c_str());
    print_eval(r, data_dir);
  }
  return 0;
}

// ---- options shared by the subcommands

// Numeric validators whose messages a person reads ("--epochs: must be a whole
// number >= 1, got -1"), not CLI11's 300-digit ranges.
CLI::Validator whole_number(int64_t lo, int64_t hi = INT64_MAX) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        const std::optional<int64_t> v = parse_int(text);
        if (!v || *v < lo || *v > hi)
          return hi == INT64_MAX ? fmt::format("must be a whole number >= {}, got '{}'", lo, text)
                                 : fmt::format("must be a whole number in [{}, {}], got '{}'", lo, hi, text);
        return "";
      },
      hi == INT64_MAX ? fmt::format("INT>={}", lo) : fmt::format("INT in [{}, {}]", lo, hi));
}
CLI::Validator real_number(double lo, double hi, bool lo_open = false) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        const std::optional<double> v = parse_real(text);
        const bool ok = v && (lo_open ? *v > lo : *v >= lo) && *v <= hi;
        if (!ok)
          return std::isinf(hi) ? fmt::format("must be a number {} {}, got '{}'", lo_open ? ">" : ">=", lo, text)
                                : fmt::format("must be a number in {}{}, {}], got '{}'", lo_open ? "(" : "[", lo, hi,
                                              text);
        return "";
      },
      std::isinf(hi) ? fmt::format("NUMBER{}{}", lo_open ? ">" : ">=", lo) : fmt::format("NUMBER in [{}, {}]", lo, hi));
}
constexpr double kInf = std::numeric_limits<double>::infinity();

// --threads, --device and the output format, on every subcommand.
struct Common {
  int threads = 0;  // 0: OpenMP's default (all cores)
  std::string device = "cpu";
  bool json = false, markdown = false, csv = false;
};
void add_common(CLI::App* cmd, Common& c, bool tables) {
  cmd->add_option("--threads", c.threads, "worker threads (0: one per core)")->check(whole_number(0, 4096));
  cmd->add_option("--device", c.device, "cpu, cuda or cuda:N")->capture_default_str();
  CLI::Option* json = cmd->add_flag("--json", c.json, "print one JSON object (errors too) instead of the human output");
  if (!tables) return;
  CLI::Option* md = cmd->add_flag("--markdown", c.markdown, "print the table as Markdown");
  CLI::Option* csv = cmd->add_flag("--csv", c.csv, "print the table as CSV");
  json->excludes(md)->excludes(csv);
  md->excludes(csv);
}

// Applies --threads and checks --device before any work starts.
Device setup(const Common& c) {
#ifdef _OPENMP
  if (c.threads > 0) omp_set_num_threads(c.threads);
#endif
  Device d(c.device);
  if (d.is_cuda()) {
    MINIDL_CHECK(cuda::built_with_cuda(),
                 "--device {}: minidl was built without CUDA (reconfigure with -DMINIDL_CUDA=ON)", c.device);
    MINIDL_CHECK(cuda::is_available(), "--device {}: {}", c.device, cuda::unavailable_reason());
    MINIDL_CHECK(d.index < cuda::device_count(), "--device {}: there are only {} CUDA devices", c.device,
                 cuda::device_count());
  }
  return d;
}

std::string version_text() {
  std::string cuda_line = !cuda::built_with_cuda() ? "not built"
                          : cuda::is_available()   ? fmt::format("built; {} device(s), first: {}", cuda::device_count(),
                                                                  cuda::device_info(0).name)
                                                   : "built; " + cuda::unavailable_reason();
  return fmt::format("minidl {} ({} build, CPU code compiled for {})\nCUDA: {}\nCPU: {}", kVersion, MINIDL_BUILD_TYPE,
                     MINIDL_CPU_ARCH, cuda_line, cpu::cpu_summary());
}

// With --json anywhere on the command line, errors are one JSON object on stdout.
bool wants_json(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--json") return true;
  return false;
}
int report_error(bool json, const std::string& message, int code) {
  if (json) std::cout << nlohmann::json{{"error", message}}.dump() << std::endl;
  else std::fprintf(stderr, "minidl: error: %s\n", message.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"minidl: train, compress and benchmark small classifiers"};
  app.require_subcommand(1);
  bool show_version = false;
  app.add_flag("--version", show_version, "print the version, build, CUDA and CPU paths, and exit");
  app.require_subcommand(0, 1);

  TrainConfig config;
  std::string out = "runs/model.safetensors", resume;
  Common train_c;
  CLI::App* train = app.add_subcommand("train", "train a model on Fashion-MNIST (or --data DIR)");
  train->add_option("--model", config.model, "mlp | mlp-small | cnn | resnet-s")->capture_default_str()
      ->check(CLI::IsMember(model_names()));
  train->add_option("--epochs", config.epochs, "epochs to train")->capture_default_str()
      ->check(whole_number(1, 100000));
  train->add_option("--batch", config.batch, "batch size")->capture_default_str()->check(whole_number(1, 1 << 20));
  train->add_option("--opt", config.opt, "optimizer")->capture_default_str()->check(CLI::IsMember({"sgd", "adam", "adamw"}));
  train->add_option("--lr", config.lr, "peak learning rate")->capture_default_str()->check(real_number(0, kInf, true));
  train->add_option("--momentum", config.momentum, "SGD momentum")->capture_default_str()->check(real_number(0, 1));
  train->add_option("--wd", config.weight_decay, "weight decay (-1: the optimizer's default)")->capture_default_str()
      ->check(real_number(-1, kInf));
  train->add_option("--schedule", config.schedule, "learning-rate schedule")->capture_default_str()
      ->check(CLI::IsMember({"cosine", "step", "none"}));
  train->add_option("--warmup-epochs", config.warmup_epochs, "warm-up epochs of the cosine schedule")
      ->capture_default_str()->check(real_number(0, kInf));
  train->add_option("--label-smoothing", config.label_smoothing, "cross-entropy label smoothing")->capture_default_str()
      ->check(real_number(0, 1));
  train->add_option("--clip", config.clip_grad_norm, "clip gradients to this global norm (0: off)")->capture_default_str()
      ->check(real_number(0, kInf));
  train->add_flag("--augment", config.augment, "random crops (padding 2) and horizontal flips");
  train->add_option("--seed", config.seed, "seed for initialisation, shuffling and augmentation")
      ->capture_default_str()
      ->check(whole_number(0));
  train->add_option("--limit-train", config.limit_train, "train on the first N training images only (0: all)")
      ->capture_default_str()->check(whole_number(0));
  train->add_option("--limit-test", config.limit_test, "test on the first N test images only (0: all)")
      ->capture_default_str()->check(whole_number(0));
  train->add_option("--data", config.data_dir, "directory of MNIST-format IDX files")->capture_default_str();
  train->add_option("--out", out, "checkpoint to write after each epoch (safetensors)")->capture_default_str();
  train->add_option("--resume", resume, "continue from this checkpoint");
  add_common(train, train_c, false);

  std::string checkpoint, eval_data = kFashionMnistDir;
  int64_t eval_batch = 256, eval_limit = 0;
  Common eval_c;
  CLI::App* eval = app.add_subcommand("eval", "evaluate a checkpoint on the test set (any model minidl saved)");
  eval->add_option("checkpoint", checkpoint, "a checkpoint written by minidl")->required();
  eval->add_option("--data", eval_data, "directory of MNIST-format IDX files")->capture_default_str();
  eval->add_option("--batch", eval_batch, "batch size")->capture_default_str()->check(whole_number(1, 1 << 20));
  eval->add_option("--limit-test", eval_limit, "evaluate the first N test images only (0: all)")->capture_default_str()
      ->check(whole_number(0));
  add_common(eval, eval_c, false);

  tools::PruneOptions prune_o;
  Common prune_c;
  CLI::App* prune = app.add_subcommand(
      "prune", "prune a checkpoint, fine-tune it, and measure dense vs masked vs CSR vs BSR vs shrunk");
  prune->add_option("checkpoint", prune_o.checkpoint, "a checkpoint minidl saved")->required()->check(CLI::ExistingFile);
  prune->add_option("--method", prune_o.method, "l1 | random | global | channel")->capture_default_str()
      ->check(CLI::IsMember({"l1", "random", "global", "channel"}));
  prune->add_option("--amount", prune_o.amount, "sparsity to reach (channel: fraction of each layer's outputs)")
      ->capture_default_str()->check(real_number(0, 1));
  prune->add_option("--criterion", prune_o.criterion, "channel ranking: l1 | l2 | random")->capture_default_str()
      ->check(CLI::IsMember({"l1", "l2", "random"}));
  prune->add_option("--schedule", prune_o.schedule, "oneshot | agp (gradual, over the fine-tuning steps)")
      ->capture_default_str()->check(CLI::IsMember({"oneshot", "agp"}));
  prune->add_option("--layers", prune_o.layers, "layers to prune by path (default: every Linear and Conv2d)");
  prune->add_option("--finetune-epochs", prune_o.finetune_epochs, "epochs of fine-tuning")->capture_default_str()
      ->check(whole_number(0, 1000));
  prune->add_option("--lr", prune_o.lr, "fine-tuning learning rate (AdamW, cosine)")->capture_default_str()
      ->check(real_number(0, kInf, true));
  prune->add_option("--batch", prune_o.batch, "fine-tuning batch size")->capture_default_str()
      ->check(whole_number(1, 1 << 16));
  prune->add_option("--seed", prune_o.seed, "random pruning and fine-tuning seed")
      ->capture_default_str()
      ->check(whole_number(0));
  prune->add_option("--data", prune_o.data_dir, "directory of MNIST-format IDX files")->capture_default_str();
  prune->add_option("--limit-train", prune_o.limit_train, "fine-tune on the first N images (0: all)")
      ->check(whole_number(0));
  prune->add_option("--limit-test", prune_o.limit_test, "evaluate on the first N test images (0: all)")
      ->check(whole_number(0));
  prune->add_option("--latency-batch", prune_o.latency_batches, "batch sizes timed")->capture_default_str()
      ->check(whole_number(1, 10000));
  prune->add_option("--bsr", prune_o.bsr, "the block format compared: bsr1x4 bsr4x1 bsr4x4 bsr8x8 bsr16x16")
      ->capture_default_str();
  prune->add_flag("--auto", prune_o.auto_select,
                  "convert a layer to CSR/BSR only where it measures faster on its real input (says which)");
  prune->add_option("--out", prune_o.out, "the pruned checkpoint to write (with --sensitivity: the JSON)");
  prune->add_flag("--sensitivity", prune_o.sensitivity,
                  "instead: prune each layer alone over --grid and report the test accuracy of each");
  prune->add_option("--grid", prune_o.grid, "sparsities for --sensitivity")->capture_default_str()
      ->check(real_number(0, 1));
  prune->add_option("--min-time", prune_o.timing.min_seconds, "time each way at least this long (s) per batch")
      ->capture_default_str()->check(real_number(0, 3600));
  prune->add_option("--min-runs", prune_o.timing.min_runs, "and at least this many interleaved rounds")
      ->capture_default_str()->check(whole_number(1, 1000000));
  add_common(prune, prune_c, false);

  tools::DistillOptions distill_o;
  Common distill_c;
  CLI::App* distill = app.add_subcommand(
      "distill", "train a student on a teacher's soft predictions; --baseline compares it with the student alone");
  distill->add_option("--teacher", distill_o.teachers,
                      "the teacher: any checkpoint minidl saved (give several for an ensemble: logits averaged)")
      ->required();
  distill->add_option("--student", distill_o.student, "a zoo model (mlp, mlp-small, cnn, resnet-s) or a checkpoint")
      ->capture_default_str();
  distill->add_option("--T", distill_o.temperature, "temperature of both softmaxes (> 0)")
      ->capture_default_str()
      ->check(real_number(0, kInf, true));
  distill->add_option("--alpha", distill_o.alpha, "weight of the teacher term, in [0, 1]")
      ->capture_default_str()
      ->check(real_number(0, 1));
  distill->add_option("--epochs", distill_o.epochs, "epochs")->capture_default_str()->check(whole_number(1, 100000));
  distill->add_option("--batch", distill_o.batch, "batch size")->capture_default_str()->check(whole_number(1, 1 << 20));
  distill->add_option("--lr", distill_o.lr, "learning rate (AdamW)")->capture_default_str()->check(real_number(0, 10));
  distill->add_option("--schedule", distill_o.schedule, "cosine | step | none")->capture_default_str()
      ->check(CLI::IsMember({"cosine", "step", "none"}));
  distill->add_flag("--augment", distill_o.augment, "random crop and flip (the teacher then runs on every batch)");
  distill->add_flag("--mixup", distill_o.mixup,
                    "the distilled student also matches the teacher on each batch mixed with a shuffled copy of itself");
  distill->add_flag("--no-cache", distill_o.no_cache,
                    "run the teacher on every batch instead of caching its logits once (to time the difference)");
  distill->add_option("--seed", distill_o.seeds, "seed (one run)")
      ->capture_default_str()
      ->expected(1)
      ->check(whole_number(0));
  distill->add_option("--seeds", distill_o.seeds, "seeds, comma-separated: repeat both arms for each")
      ->delimiter(',')
      ->check(whole_number(0));
  distill->add_flag("--baseline", distill_o.baseline,
                    "also train the student alone (same seed, epochs, schedule, data order) and compare");
  distill->add_flag("--sweep", distill_o.sweep, "train one student per T in --sweep-T and alpha in --sweep-alpha");
  distill->add_option("--sweep-T", distill_o.sweep_temperatures, "temperatures of --sweep")
      ->capture_default_str()
      ->delimiter(',')
      ->check(real_number(0, kInf, true));
  distill->add_option("--sweep-alpha", distill_o.sweep_alphas, "alphas of --sweep")
      ->capture_default_str()
      ->delimiter(',')
      ->check(real_number(0, 1));
  distill->add_option("--data", distill_o.data_dir, "directory of MNIST-format IDX files")->capture_default_str();
  distill->add_option("--limit-train", distill_o.limit_train, "train on the first N images (0: all)")
      ->capture_default_str()->check(whole_number(0));
  distill->add_option("--limit-test", distill_o.limit_test, "evaluate on the first N test images (0: all)")
      ->capture_default_str()->check(whole_number(0));
  distill->add_option("--out", distill_o.out, "write the (first) distilled student here");
  add_common(distill, distill_c, false);

  tools::QuantizeOptions quant_o;
  Common quant_c;
  CLI::App* quantize = app.add_subcommand(
      "quantize", "int8 dynamic quantization of a checkpoint's Linear layers: accuracy, per-layer SQNR, size");
  quantize->add_option("checkpoint", quant_o.checkpoint, "a checkpoint written by minidl (f32)")->required();
  quantize->add_option("--dynamic", quant_o.dynamic, "the scheme: int8 (weights ahead of time, activations per batch)")
      ->capture_default_str();
  quantize->add_flag("--per-tensor", quant_o.per_tensor, "one weight scale per tensor (default: per output channel)");
  quantize->add_flag("--conv", quant_o.convolutions,
                     "also the convolutions (groups 1) whose patch C*k*k is long enough to gain; CPU only "
                     "(PyTorch's quantize_dynamic takes Linear only)");
  quantize->add_option("--calibration", quant_o.calibration, "test images on which each layer's SQNR is measured")
      ->capture_default_str()->check(whole_number(1, 60000));
  quantize->add_option("--data", quant_o.data_dir, "directory of MNIST-format IDX files")->capture_default_str();
  quantize->add_option("--limit-test", quant_o.limit_test, "evaluate on the first N test images (0: all)")
      ->capture_default_str()->check(whole_number(0));
  quantize->add_option("--out", quant_o.out, "the int8 checkpoint to write")->required();
  add_common(quantize, quant_c, false);

  CLI::App* bench = app.add_subcommand("bench", "benchmarks: warm-up, many timed runs, medians and spread");
  bench->require_subcommand(1);
  bench::CommonOptions bench_opts;
  Common bench_c;
  auto add_bench = [&](CLI::App* cmd, bench::CommonOptions& bench_opts) {
    add_common(cmd, bench_c, true);
    cmd->add_option("--min-time", bench_opts.min_seconds, "time each variant at least this long (s)")
        ->capture_default_str()->check(real_number(0, 3600));
    cmd->add_option("--min-runs", bench_opts.min_runs, "and at least this many timed runs")->capture_default_str()
        ->check(whole_number(1, 1000000));
    cmd->add_option("--warmup-runs", bench_opts.warmup, "untimed runs first")->capture_default_str()
        ->check(whole_number(0, 1000000));
    cmd->add_flag("--cold", bench_opts.cold, "flush the caches before every timed run (a cold figure)");
    cmd->add_option("--json-out", bench_opts.json_out, "also write the JSON object to FILE (atomically)");
  };
  std::vector<std::string> gemm_shapes = {"1024x1024x1024", "2048x2048x2048", "256x4096x4096", "128x784x512",
                                          "128x512x256",    "128x3136x128",   "32x1024x1024"};
  bool gemm_reference = false;
  CLI::App* bench_gemm = bench->add_subcommand("gemm", "SGEMM: minidl against OpenBLAS (when built with it)");
  bench_gemm->add_option("--shapes", gemm_shapes, "MxNxK shapes")->capture_default_str();
  bench_gemm->add_flag("--reference", gemm_reference, "also time the reference loop");
  add_bench(bench_gemm, bench_opts);
  std::string ts_model = "mlp", ts_data = kFashionMnistDir;
  int64_t ts_batch = 128, ts_batches = 20;
  bool ts_raw = false;
  CLI::App* bench_ts = bench->add_subcommand("train-step", "one training step (forward, backward, AdamW) of a zoo model");
  bench_ts->add_option("--model", ts_model, "model")->capture_default_str()->check(CLI::IsMember(model_names()));
  bench_ts->add_option("--batch", ts_batch, "batch size")->capture_default_str()->check(whole_number(1, 1 << 16));
  bench_ts->add_option("--batches", ts_batches, "distinct fixed batches cycled through")->capture_default_str()
      ->check(whole_number(1, 10000));
  bench_ts->add_option("--data", ts_data, "directory of MNIST-format IDX files")->capture_default_str();
  bench_ts->add_flag("--raw", ts_raw, "include every timed run in the JSON");
  bench_ts->add_flag("--graph", bench_opts.graph,
                     "with --device cuda: also time the step captured as a CUDA graph, interleaved with the eager one");
  add_bench(bench_ts, bench_opts);
  std::string inf_model = "mlp", inf_data = kFashionMnistDir;
  std::vector<int64_t> inf_batches = {1, 128};
  bool inf_raw = false;
  CLI::App* bench_inf = bench->add_subcommand("infer", "inference latency of a zoo model at each batch size");
  bench_inf->add_option("--model", inf_model, "model")->capture_default_str()->check(CLI::IsMember(model_names()));
  bench_inf->add_option("--batch", inf_batches, "batch sizes")->capture_default_str()->check(whole_number(1, 10000));
  bench_inf->add_option("--data", inf_data, "directory of MNIST-format IDX files")->capture_default_str();
  bench_inf->add_flag("--raw", inf_raw, "include every timed run in the JSON");
  bool inf_int8 = false;
  bench_inf->add_flag("--int8", inf_int8,
                      "time the model with its Linear layers int8 dynamic beside the f32 one (interleaved)");
  bench_inf->add_flag("--graph", bench_opts.graph,
                      "with --device cuda: also time the forward captured as a CUDA graph, interleaved with eager");
  add_bench(bench_inf, bench_opts);
  std::vector<std::string> conv_shapes = {"128x1x28x28:32x3:p1", "128x32x14x14:64x3:p1", "128x64x14x14:128x1",
                                          "128x64x28x28:64x3:p1"};
  CLI::App* bench_cv = bench->add_subcommand("conv", "conv2d forward and forward + backward");
  bench_cv->add_option("--shapes", conv_shapes, "NxCxHxW:OxK[:sS][:pP] shapes")->capture_default_str();
  bool conv_int8 = false;
  bench_cv->add_flag("--int8", conv_int8,
                     "time the int8 convolution of dynamic quantization beside the f32 one (forward, interleaved)");
  bool conv_direct = false;
  bench_cv->add_flag("--direct", conv_direct,
                     "time the direct channels-last kernel of a first layer (few input channels) beside im2col + "
                     "GEMM (forward, +ReLU, interleaved)");
  add_bench(bench_cv, bench_opts);
  std::vector<std::string> loss_shapes = {"128x10", "128x1000", "4096x10"};
  CLI::App* bench_ls = bench->add_subcommand("loss", "fused cross_entropy and kl_div_logits against composed ops");
  bench_ls->add_option("--shapes", loss_shapes, "NxC shapes")->capture_default_str();
  add_bench(bench_ls, bench_opts);
  int64_t ops_batch = 128;
  CLI::App* bench_op =
      bench->add_subcommand("ops", "single ops: 2x2 max pooling, full sum and max, relu, a small linear layer");
  bench_op->add_option("--batch", ops_batch, "images per op (the sum and max: batch x 128K floats)")
      ->capture_default_str();
  add_bench(bench_op, bench_opts);
  // The sweep times hundreds of cells: shorter minimums per cell by default.
  bench::SparseSweepOptions sweep;
  bench::CommonOptions sweep_opts{.min_seconds = 0.1, .min_runs = 5, .warmup = 1};
  bench::ClassifierOptions classifier;
  CLI::App* bench_cl = bench->add_subcommand(
      "classifier",
      "one classifier as fp32 eager / compiled, bf16, int8 dynamic (and pruned, shrunk, distilled rows): one "
      "table, on the CPU or --device cuda");
  bench_cl->add_option("--model", classifier.model, "mlp | cnn | ... (runs/NAME.safetensors if trained) or a checkpoint")
      ->capture_default_str();
  bench_cl->add_option("--batch", classifier.batches, "batch sizes")->capture_default_str()
      ->check(whole_number(1, 1 << 16));
  bench_cl->add_option("--sparse", classifier.sparse, "a pruned checkpoint (minidl prune --out): a CSR row");
  bench_cl->add_option("--shrunk", classifier.shrunk, "a channel-pruned checkpoint: a structured row");
  bench_cl->add_option("--student", classifier.student, "a distilled student (minidl distill --out)");
  bench_cl->add_option("--data", classifier.data_dir, "directory of MNIST-format IDX files")->capture_default_str();
  bench_cl->add_option("--limit-test", classifier.limit_test, "accuracy on the first N test images (0: all)")
      ->capture_default_str()->check(whole_number(0));
  add_bench(bench_cl, bench_opts);

  CLI::App* bench_sp = bench->add_subcommand(
      "sparse", "dense vs CSR, BSR and structured shrink over sparsities, shapes and batch sizes");
  bench_sp->add_flag("--quick", sweep.quick, "a reduced grid (under 2 minutes)");
  bench_sp->add_option("--shapes", sweep.shapes, "OUTxIN or convOUTxINxPOSITIONS (default: the grid)");
  bench_sp->add_option("--batch", sweep.batches, "batch sizes (default 1 32 256)")->check(whole_number(1, 1 << 16));
  bench_sp->add_option("--sparsity", sweep.sparsities, "sparsities in [0, 1] (default: 0 to 0.99)")
      ->check(real_number(0, 1));
  bench_sp->add_option("--formats", sweep.formats, "csr bsr1x4 bsr4x1 bsr4x4 bsr8x8 bsr16x16 (default: all)");
  bench_sp->add_option("--weights", sweep.weights, "checkpoints whose weights give the magnitude-pruned pattern")
      ->check(CLI::ExistingFile);
  bench_sp->add_option("--out", sweep.out, "also write the JSON to this file (for tools/bench/plot_sparse.py)");
  add_bench(bench_sp, sweep_opts);

  const bool json_errors = wants_json(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (!json_errors) return app.exit(e);
    return report_error(true, e.what(), e.get_exit_code());
  }
  if (show_version) {
    std::cout << version_text() << std::endl;
    return 0;
  }
  if (app.get_subcommands().empty()) {
    std::cout << app.help() << std::endl;
    return 1;
  }
  try {
    if (*train) {
      config.device = setup(train_c).str();
      return run_train(config, out, resume, train_c.json);
    }
    if (*prune) {
      setup(prune_c);
      prune_o.timing.json = prune_c.json;
      return tools::run_prune(prune_o);
    }
    if (*distill) {
      distill_o.device = setup(distill_c).str();
      distill_o.json = distill_c.json;
      return tools::run_distill(distill_o);
    }
    if (*quantize) {
      MINIDL_CHECK(setup(quant_c).is_cpu(),
                   "quantize --device {}: quantizing (and its SQNR report) runs on the CPU; the int8 checkpoint "
                   "it writes runs on a GPU too: minidl eval OUT --device {}",
                   quant_c.device, quant_c.device);
      quant_o.json = quant_c.json;
      return tools::run_quantize(quant_o);
    }
    if (*eval) return run_eval(checkpoint, eval_data, eval_batch, eval_limit, setup(eval_c), eval_c.json);
    bench_opts.json = bench_c.json, bench_opts.markdown = bench_c.markdown, bench_opts.csv = bench_c.csv;
    const Device bench_device = setup(bench_c);
    const bool on_gpu = bench_device.is_cuda();
    bench_opts.device = bench_c.device;
    if (!bench_opts.json_out.empty()) prepare_output(bench_opts.json_out, "bench --json-out");
    // (every bench subcommand runs on a GPU too)
    if (*bench_gemm)
      return on_gpu ? bench::bench_gemm_cuda(gemm_shapes, bench_opts)
                    : bench::bench_gemm(gemm_shapes, gemm_reference, bench_opts);
    if (*bench_ts) return bench::bench_train_step(ts_model, ts_batch, ts_batches, ts_data, ts_raw, bench_opts);
    if (*bench_inf) return bench::bench_infer(inf_model, inf_batches, inf_data, inf_raw, bench_opts, inf_int8);
    if (*bench_cv) {
      if (conv_int8 && conv_direct) throw Error("bench conv: --int8 and --direct are separate benchmarks: pick one");
      if (conv_direct) return bench::bench_conv_direct(conv_shapes, bench_opts);
      return conv_int8 ? bench::bench_conv_int8(conv_shapes, bench_opts) : bench::bench_conv(conv_shapes, bench_opts);
    }
    if (*bench_ls) return on_gpu ? bench::bench_loss_cuda(loss_shapes, bench_opts) : bench::bench_loss(loss_shapes, bench_opts);
    if (*bench_op) return bench::bench_ops(ops_batch, bench_opts);
    if (*bench_cl) return bench::bench_classifier(classifier, bench_opts);
    if (*bench_sp) {
      sweep_opts.json = bench_c.json, sweep_opts.markdown = bench_c.markdown, sweep_opts.csv = bench_c.csv;
      sweep_opts.device = bench_c.device;
      return on_gpu ? bench::bench_sparse_cuda(sweep, sweep_opts) : bench::bench_sparse(sweep, sweep_opts);
    }
  } catch (const std::exception& e) {
    std::fflush(stdout);
    return report_error(json_errors, e.what(), 1);
  }
  return 0;
}
