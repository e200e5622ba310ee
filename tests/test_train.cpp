// tests/test_train.cpp — a quick end-to-end training run on real Fashion-MNIST
// images that must reach a fixed accuracy within seconds, and the NaN guard.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>

#include "minidl.h"
#include "nn/train.h"

using namespace minidl;
using namespace minidl::nn;

namespace {
bool have_fashion_mnist() {
  return std::filesystem::exists(std::string(kFashionMnistDir) + "/train-images-idx3-ubyte.gz");
}
}  // namespace

TEST_CASE("mlp-small learns Fashion-MNIST: 4000 images, 2 epochs, >= 78% on 2000 test images") {
  REQUIRE_MESSAGE(have_fashion_mnist(), "Fashion-MNIST is missing: tools/install_deps.sh installs dataset-fashion-mnist");
  ImageDataset train = load_mnist_format(kFashionMnistDir, "train").subset(4000);
  ImageDataset test = load_mnist_format(kFashionMnistDir, "t10k").subset(2000);
  TrainConfig c{.model = "mlp-small", .epochs = 2, .batch = 64, .lr = 3e-3, .seed = 1};
  Trainer trainer(build_model(c), c);
  EvalResult before = evaluate(trainer.model(), test);
  EpochResult e1 = trainer.run_epoch(train, test);
  EpochResult e2 = trainer.run_epoch(train, test);
  MESSAGE("accuracy " << before.accuracy << " -> " << e1.test.accuracy << " -> " << e2.test.accuracy);
  CHECK(before.accuracy < 0.3);  // untrained: about chance
  CHECK(e2.train_loss < e1.train_loss);
  CHECK(e2.test.accuracy >= 0.78);
  // The work done, not the time it took: every image once per epoch, in 63 steps of 64 (the last one 32).
  CHECK(trainer.optimizer().steps() == 2 * 63);
  CHECK(trainer.history().size() == 2);
}

TEST_CASE("a CPU run with a seed is deterministic") {
  REQUIRE(have_fashion_mnist());
  // Three batches of the cnn: the shuffle, the initialisation and every kernel's reduction order at work.
  ImageDataset train = load_mnist_format(kFashionMnistDir, "train").subset(192);
  ImageDataset test = load_mnist_format(kFashionMnistDir, "t10k").subset(64);
  TrainConfig c{.model = "cnn", .epochs = 1, .batch = 64, .seed = 3};
  EpochResult a = Trainer(build_model(c), c).run_epoch(train, test);
  EpochResult b = Trainer(build_model(c), c).run_epoch(train, test);
  CHECK(a.train_loss == b.train_loss);
  CHECK(a.test.loss == b.test.loss);
  c.seed = 4;
  CHECK(Trainer(build_model(c), c).run_epoch(train, test).train_loss != a.train_loss);
}

TEST_CASE("a NaN loss stops training with a clear message") {
  REQUIRE(have_fashion_mnist());
  ImageDataset train = load_mnist_format(kFashionMnistDir, "train").subset(256);
  ImageDataset test = load_mnist_format(kFashionMnistDir, "t10k").subset(64);
  TrainConfig c{.model = "mlp-small", .epochs = 1, .batch = 64, .opt = "sgd", .lr = 1e30, .momentum = 0,
                .schedule = "none"};
  Trainer trainer(build_model(c), c);
  CHECK_THROWS_WITH_AS(trainer.run_epoch(train, test), doctest::Contains("train: the loss became"), Error);
}
