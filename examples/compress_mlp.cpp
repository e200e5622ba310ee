// examples/compress_mlp.cpp — the compression workflow as a user writes it.
// Train an mlp (784-512-256-10), then make it cheaper three ways and measure
// each against it:
//   pruned     90% of its weights removed by one global magnitude threshold,
//              fine-tuned with the masks held, then stored as CSR (compress/prune.h,
//              compress/sparse_layers.h);
//   distilled  mlp-small (784-64-10) trained on the teacher's softened logits
//              as well as the labels (ops/loss.h, distillation_loss);
//   int8       dynamic quantization of its Linear layers (compress/quantize.h).
// One table: test accuracy, the bytes of its weights, and the latency of one
// image, the four timed in interleaved rounds (so a slow moment of the machine
// slows them all). `minidl prune`, `minidl distill` and `minidl quantize` do each
// with every option; this is the library underneath, in one page.
//
//   ./build/default/examples/compress_mlp [train images] [epochs]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "minidl.h"

using namespace minidl;
using namespace minidl::nn;

namespace {

// The bytes a model's weights take: its tensors, and a sparse layer's stored
// values and indices (which are not plain tensors of the state dict).
int64_t weight_bytes(Module& m) {
  int64_t b = 0;
  for (const auto& [name, t] : m.state_dict()) b += t.numel() * static_cast<int64_t>(element_size(t.dtype()));
  for (auto& [path, sub] : m.named_modules())
    if (auto* s = dynamic_cast<compress::SparseLinear*>(sub.get())) b += s->weight.bytes();
  return b;
}

// A copy of a trained mlp: the same architecture, its weights loaded.
ModulePtr copy_of(Module& model, const std::string& zoo_name) {
  Generator unused(0);
  ModulePtr copy = build_model(zoo_name, unused);
  copy->load_state_dict(model.state_dict());
  return copy;
}

}  // namespace

int main(int argc, char** argv) {
  const std::optional<int64_t> images = argc > 1 ? parse_int(argv[1]) : 20000;  // core/parse.h
  const std::optional<int64_t> epochs = argc > 2 ? parse_int(argv[2]) : 2;
  if (!images || *images < 100 || *images > 60000 || !epochs || *epochs < 1 || *epochs > 50) {
    std::fprintf(stderr, "compress_mlp: usage: compress_mlp [train images, 100..60000] [epochs, 1..50]\n");
    return 2;
  }
  try {
    const ImageDataset train = load_mnist_format(kFashionMnistDir, "train").subset(*images);
    const ImageDataset test = load_mnist_format(kFashionMnistDir, "t10k").subset(5000);
    DataLoader one(test, {.batch_size = 1, .shuffle = false});
    one.start_epoch(0);
    const Tensor x = one.next()->images;  // one test image: the input every latency below is of
    auto report = [&](Trainer&, const EpochResult& r) {
      std::printf("  epoch %lld: train loss %.4f, test accuracy %.2f%%\n", static_cast<long long>(r.epoch),
                  r.train_loss, 100 * r.test.accuracy);
    };

    // 1. The model to compress, trained as usual (cross-entropy, AdamW).
    std::printf("teacher: mlp 784-512-256-10\n");
    const TrainConfig base{.model = "mlp", .epochs = *epochs, .batch = 32, .seed = 1};
    Generator gen(1);
    ModulePtr teacher = build_model("mlp", gen);
    Trainer teach(teacher, base, {.after_epoch = report});
    while (teach.epochs_done() < base.epochs) teach.run_epoch(train, test);
    teacher->eval();

    // 2. Pruned: one global threshold across the three weight matrices, so the
    //    layers end at different sparsities; the Pruner's hook re-applies the masks
    //    (and masks AdamW's moments) after every step of the fine-tuning, so the
    //    pruned weights stay zero. Then each Linear is timed dense and as a
    //    SparseLinear holding its weight in CSR, on the activations x really
    //    gives it, and becomes sparse only where that is faster.
    std::printf("pruned: 90%% of the weights, fine-tuned for one epoch with the masks held\n");
    ModulePtr pruned = copy_of(*teacher, "mlp");
    compress::Pruner pruner(*pruned);
    pruner.global_unstructured({"1.weight", "3.weight", "5.weight"}, compress::Amount::fraction(0.9));
    TrainConfig finetune = base;
    finetune.epochs = 1, finetune.lr = 3e-4;
    Trainer tune(pruned, finetune, {.after_step = pruner.after_step(), .after_epoch = report});
    tune.run_epoch(train, test);
    pruned->eval();
    for (const char* p : {"1.weight", "3.weight", "5.weight"})
      std::printf("  %s: %.1f%% zero\n", p, 100 * pruner.sparsity(p));
    for (const auto& choice :
         compress::to_sparse(*pruned, compress::SparseFormat::csr(), {.measure = true, .example = x}))
      std::printf("  layer %s: %s (%s)\n", choice.path.c_str(), choice.choice.c_str(), choice.reason.c_str());

    // 3. Distilled: the small student learns from the teacher's logits at
    //    temperature 4 (loss = 0.7·T²·KL + 0.3·CE). The teacher runs under
    //    NoGradGuard inside the loss: its logits are data, not part of the graph.
    std::printf("distilled: mlp-small 784-64-10, T = 4, alpha = 0.7\n");
    Generator student_gen(2);
    ModulePtr student = build_model("mlp-small", student_gen);
    TrainConfig distill = base;
    distill.model = "mlp-small";
    auto kd_loss = [&](const Tensor& logits, const Batch& b) {
      Tensor teacher_logits;
      {
        NoGradGuard no_grad;
        teacher_logits = teacher->forward(b.images);
      }
      return distillation_loss(logits, teacher_logits, b.labels, {.temperature = 4.0, .alpha = 0.7});
    };
    Trainer learn(student, distill, {.loss = kd_loss, .after_epoch = report});
    while (learn.epochs_done() < distill.epochs) learn.run_epoch(train, test);
    student->eval();

    // 4. int8: each Linear's weight quantized once, per output channel; each
    //    call quantizes its input from that batch's range and runs an integer GEMM.
    std::printf("int8: dynamic quantization of the teacher's Linear layers\n");
    ModulePtr int8 = copy_of(*teacher, "mlp");
    int8->eval();
    for (const auto& layer : compress::quantize_dynamic(*int8))
      std::printf("  layer %s: weight SQNR %.1f dB\n", layer.path.c_str(), layer.weight_sqnr_db);

    // The table. Latency: one image, the four models in interleaved rounds of
    // 50 calls each, the median round.
    struct Variant {
      const char* name;
      ModulePtr model;
      std::vector<double> seconds;
    };
    std::vector<Variant> variants = {{"teacher (fp32)", teacher, {}},
                                     {"pruned 90% (+ CSR)", pruned, {}},
                                     {"distilled mlp-small", student, {}},
                                     {"int8 dynamic", int8, {}}};
    NoGradGuard no_grad;
    for (int round = 0; round < 41; ++round)
      for (Variant& v : variants) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 50; ++i) v.model->forward(x);
        v.seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 50);
      }
    std::printf("\n%-22s %9s %11s %14s %9s\n", "variant", "accuracy", "weights", "batch-1 time", "speed-up");
    double base_time = 0;
    for (Variant& v : variants) {
      std::sort(v.seconds.begin() + 1, v.seconds.end());  // round 0 warms up
      const double median = v.seconds[1 + (v.seconds.size() - 1) / 2];
      if (base_time == 0) base_time = median;
      const double accuracy = evaluate(*v.model, test).accuracy;
      std::printf("%-22s %8.2f%% %8.1f KiB %11.1f us %8.2fx\n", v.name, 100 * accuracy, weight_bytes(*v.model) / 1024.0,
                  median * 1e6, base_time / median);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compress_mlp: %s\n", e.what());
    return 1;
  }
  return 0;
}
