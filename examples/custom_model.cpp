// examples/custom_model.cpp — a model that is not in the zoo, trained through
// nn::Trainer with a loss of your own and a hook, then saved so that
// `minidl eval` can evaluate it without being told what it is.
//
//   ./build/default/examples/custom_model [OUT.safetensors] [train images]
//   ./build/default/minidl eval OUT.safetensors
#include <cstdio>
#include <cstdlib>
#include <string>

#include "minidl.h"

using namespace minidl;
using namespace minidl::nn;

int main(int argc, char** argv) {
  const std::string out = argc > 1 ? argv[1] : "runs/custom.safetensors";
  const std::optional<int64_t> images = argc > 2 ? parse_int(argv[2]) : 10000;  // core/parse.h
  if (!images || *images < 1 || *images > 60000) {
    std::fprintf(stderr, "custom_model: the number of training images must be a whole number in [1, 60000], got '%s'\n",
                 argv[2]);
    return 2;
  }
  try {
    ImageDataset train = load_mnist_format(kFashionMnistDir, "train").subset(*images);
    ImageDataset test = load_mnist_format(kFashionMnistDir, "t10k").subset(2000);

    // A small conv net of our own: strided conv, BatchNorm, GELU, average pool, two linears.
    Generator gen(42);
    auto model = make<Sequential>();
    model
        ->add(make<Conv2d>(1, 16, 3, Conv2dOptions{.stride = {2, 2}, .padding = {1, 1}}, false, gen))  // 14×14
        .add(make<BatchNorm2d>(16))
        .add(make<GELU>())
        .add(make<AvgPool2d>(2))  // 7×7
        .add(make<Flatten>())
        .add(make<Linear>(16 * 7 * 7, 64, true, gen))
        .add(make<ReLU>())
        .add(make<Linear>(64, 10, true, gen));

    // Cross-entropy with label smoothing plus a small penalty on the logits' size;
    // a hook that reports the running step every 100 steps.
    TrainConfig config{.model = "custom", .epochs = 1, .batch = 64, .lr = 3e-3, .seed = 42};
    TrainHooks hooks{.loss =
                         [](const Tensor& logits, const Batch& b) {
                           return add(cross_entropy(logits, b.labels, {.label_smoothing = 0.05}),
                                      mul(mean(mul(logits, logits)), 1e-4));
                         },
                     .after_step =
                         [](Trainer&, int64_t step) {
                           if (step % 100 == 0) std::printf("step %lld\n", static_cast<long long>(step));
                         },
                     .after_epoch =
                         [](Trainer&, const EpochResult& r) {
                           std::printf("epoch %lld: train loss %.4f, test accuracy %.2f%%\n",
                                       static_cast<long long>(r.epoch), r.train_loss, 100 * r.test.accuracy);
                         }};
    Trainer trainer(model, config, hooks);
    std::printf("%s\n", model->str().c_str());
    while (trainer.epochs_done() < config.epochs) trainer.run_epoch(train, test);
    trainer.save(out);
    std::printf("saved %s: `minidl eval %s` rebuilds it from the spec in its metadata\n", out.c_str(), out.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "custom_model: %s\n", e.what());
    return 1;
  }
  return 0;
}
