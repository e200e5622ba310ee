// examples/compiled_inference.cpp — serve a model through a compiled plan.
//
//   compiled_inference [CHECKPOINT] [BATCH] [ROUNDS] [f32|bf16|int8]
//
// Loads a checkpoint (or builds an untrained resnet-s), compiles it for one
// batch size, prints the plan (what was fused, folded and shared), checks it
// against eager, and times both, plus where the plan's time goes, step by step.
// Where the plan keeps activations channels last (between int8 convolutions),
// it also times the plan compiled without that, the two interleaved.
// bf16: the model and its input converted with to(bf16) first. int8: the model
// quantized first (int8 dynamic, its Linear layers and the convolutions that gain).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

#include "minidl.h"

using namespace minidl;

namespace {
// Median seconds of `fn` over `rounds` runs of 5 calls.
template <class F>
double median_seconds(int rounds, F&& fn) {
  for (int i = 0; i < 5; ++i) fn();
  std::vector<double> t;
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 5; ++i) fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 5);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Median seconds of f and of g, `rounds` rounds of 5 calls each, alternating.
template <class F, class G>
std::pair<double, double> interleaved_medians(int rounds, F&& f, G&& g) {
  auto five = [](auto& fn) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 5; ++i) fn();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 5;
  };
  five(f), five(g);  // warm-up
  std::vector<double> tf, tg;
  for (int r = 0; r < rounds; ++r) tf.push_back(five(f)), tg.push_back(five(g));
  std::sort(tf.begin(), tf.end()), std::sort(tg.begin(), tg.end());
  return {tf[tf.size() / 2], tg[tg.size() / 2]};
}

// argv[i] as a whole number in [lo, hi], or `fallback` when it is not given.
int64_t whole_argument(int argc, char** argv, int i, const char* name, int64_t lo, int64_t hi, int64_t fallback) {
  if (argc <= i) return fallback;
  const std::optional<int64_t> v = parse_int(argv[i]);  // core/parse.h: the whole text, or nothing
  if (!v || *v < lo || *v > hi)
    throw Error(std::string("compiled_inference: ") + name + " must be a whole number in [" + std::to_string(lo) +
                ", " + std::to_string(hi) + "], got '" + argv[i] + "'");
  return *v;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string path = argc > 1 ? argv[1] : "";
    const int64_t batch = whole_argument(argc, argv, 2, "BATCH", 1, 65536, 1);
    const int rounds = static_cast<int>(whole_argument(argc, argv, 3, "ROUNDS", 1, 100000, 31));
    const std::string dtype = argc > 4 ? argv[4] : "f32";
    if (dtype != "f32" && dtype != "bf16" && dtype != "int8")
      throw Error("compiled_inference: the dtype must be f32, bf16 or int8, got '" + dtype + "'");
    Generator gen(0);
    nn::ModulePtr model = path.empty() ? nn::build_model("resnet-s", gen) : nn::load_model(path);
    model->eval();
    NoGradGuard no_grad;  // inference: no autograd graph, in eager or in the plan
    if (dtype == "bf16") model->to(DType::bf16);
    if (dtype == "int8") {
      compress::QuantizeOptions int8;
      int8.convolutions = true;  // beyond PyTorch's quantize_dynamic, which takes Linear layers only
      for (const auto& layer : compress::quantize_dynamic(*model, int8))
        if (!layer.kept_f32.empty()) std::printf("kept f32: %s: %s\n", layer.path.c_str(), layer.kept_f32.c_str());
    }

    const Tensor x = randn({batch, 1, 28, 28}, {}, gen).to(dtype == "bf16" ? DType::bf16 : DType::f32);
    Plan plan = compile(*model, x);  // checks itself against eager on x
    std::cout << plan.describe();

    const Tensor eager = model->forward(x);
    const Tensor planned = plan.run(x).clone();  // clone: the next run overwrites the plan's output
    std::printf("largest difference from eager: %.3g\n",
                max(abs(sub(planned.to(DType::f32), eager.to(DType::f32)))).item());

    const double te = median_seconds(rounds, [&] { model->forward(x); });
    const double tp = median_seconds(rounds, [&] { plan.run(x); });
    std::printf("batch %lld: eager %.1f us, plan %.1f us (%.2fx)\n", static_cast<long long>(batch), te * 1e6, tp * 1e6,
                te / tp);
    Plan channels_first = compile(*model, x, {.channels_last = false});
    if (channels_first.describe() != plan.describe()) {
      const auto [tl, tf] = interleaved_medians(
          rounds, [&] { plan.run(x); }, [&] { channels_first.run(x); });
      std::printf("channels last between int8 convolutions: %.1f us; channels first throughout: %.1f us (%.2fx)\n",
                  tl * 1e6, tf * 1e6, tf / tl);
    }
    std::printf("where the plan's time goes:\n");
    for (const auto& [step, seconds] : plan.profile(x, rounds)) std::printf("  %8.1f us  %s\n", seconds * 1e6, step.c_str());
    return 0;
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
