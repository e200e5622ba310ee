// tests/test_train.cpp — a quick end-to-end training run on real Fashion-MNIST
// images that must reach a fixed accuracy within seconds, the NaN guard, and
// the refusal of a model that does not give the data's ten classes.
#include <doctest/doctest.h>

#include <chrono>

#include "minidl.h"
#include "nn/train.h"

using namespace minidl;
using namespace minidl::nn;

TEST_CASE("mlp-small learns Fashion-MNIST: 4000 images, 2 epochs, >= 78% on 2000 test images") {
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
  ImageDataset train = load_mnist_format(kFashionMnistDir, "train").subset(256);
  ImageDataset test = load_mnist_format(kFashionMnistDir, "t10k").subset(64);
  TrainConfig c{.model = "mlp-small", .epochs = 1, .batch = 64, .opt = "sgd", .lr = 1e30, .momentum = 0,
                .schedule = "none"};
  Trainer trainer(build_model(c), c);
  CHECK_THROWS_WITH_AS(trainer.run_epoch(train, test), doctest::Contains("train: the loss became"), Error);
}

TEST_CASE("evaluate and train refuse a model whose logits are not the data's 10 classes") {
  const ImageDataset test = load_mnist_format(kFashionMnistDir, "t10k").subset(8);
  Generator gen(3);
  for (int64_t classes : {12, 5}) {
    CAPTURE(classes);
    auto model = make<Sequential>();
    model->add(make<Flatten>()).add(make<Linear>(784, classes, true, gen));
    // Every image predicted as the last class: 11 or 4, outside or inside 0-9.
    {
      NoGradGuard no_grad;
      model->named_parameters().back().second.fill_(0.0);
      auto bias = model->named_parameters().back().second;
      CHECK(model->named_parameters().back().first == "1.bias");
      bias.narrow(0, classes - 1, 1).fill_(100.0);
    }
    const std::string message = fmt::format("gives {} logits per image, but the data has 10 classes", classes);
    CHECK_THROWS_WITH_AS(evaluate(*model, test), doctest::Contains(("evaluate: the model " + message).c_str()), Error);
    // Training stops at its first batch, before any update.
    TrainConfig c{.model = "custom", .epochs = 1, .batch = 4};
    Trainer trainer(model, c);
    const std::vector<float> before = model->named_parameters().front().second.to_vector<float>();
    CHECK_THROWS_WITH_AS(trainer.run_epoch(test, test), doctest::Contains(("train: the model " + message).c_str()),
                         Error);
    CHECK(model->named_parameters().front().second.to_vector<float>() == before);
  }
}

TEST_CASE("an empty data set is refused: no accuracy is made up for zero images") {
  const ImageDataset test = load_mnist_format(kFashionMnistDir, "t10k").subset(8), none = test.subset(0);
  TrainConfig c{.model = "mlp-small", .epochs = 1, .batch = 4};
  Trainer trainer(build_model(c), c);
  CHECK_THROWS_WITH_AS(evaluate(trainer.model(), none), "evaluate: the data set holds no images", Error);
  CHECK_THROWS_WITH_AS(trainer.run_epoch(none, test), "train: the training set holds no images", Error);
  CHECK_THROWS_WITH_AS(trainer.run_epoch(test, none), doctest::Contains("train: the test set holds no images"), Error);
  CHECK(trainer.epochs_done() == 0);
}
