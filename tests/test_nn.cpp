// tests/test_nn.cpp — modules, layers, initialisation, state dicts, the model zoo.
#include <doctest/doctest.h>

#include <cmath>

#include "minidl.h"
#include "nn/models.h"

using namespace minidl;
using namespace minidl::nn;

TEST_CASE("the model zoo: names, shapes and parameter counts") {
  // mlp: 784·512 + 512 + 512·256 + 256 + 256·10 + 10
  CHECK(build_model("mlp")->parameter_count() == 535818);
  // mlp-small: 784·64 + 64 + 64·10 + 10
  CHECK(build_model("mlp-small")->parameter_count() == 50890);
  // cnn: 1·32·9 + 32 + 32·64·9 + 64 + 3136·128 + 128 + 128·10 + 10
  CHECK(build_model("cnn")->parameter_count() == 421642);
  Tensor x = randn({2, 1, 28, 28});
  for (const std::string& name : model_names()) {
    CAPTURE(name);
    auto m = build_model(name);
    CHECK(m->forward(x).shape() == Shape{2, 10});
  }
  // PyTorch's names: Sequential children are numbered
  std::vector<std::string> names;
  for (auto& [n, t] : build_model("cnn")->named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight",
                                          "9.bias"});
  StateDict sd = build_model("resnet-s")->state_dict();
  CHECK(sd.count("4.shortcut.0.weight"));     // the projection shortcut of the 32 -> 64 block
  CHECK(sd.count("4.bn1.running_var"));
  CHECK(sd.count("1.num_batches_tracked"));
  CHECK_FALSE(sd.count("3.shortcut.0.weight"));  // 32 -> 32: identity shortcut
  CHECK_THROWS_WITH_AS(build_model("vgg"), "unknown model 'vgg' (known: mlp, mlp-small, cnn, resnet-s)", Error);
}

TEST_CASE("initialisation follows PyTorch: U(-1/sqrt(fan_in), 1/sqrt(fan_in))") {
  Generator gen(3);
  Linear l(400, 300, true, gen);
  const double bound = 1.0 / 20.0;
  CHECK(max(l.weight).item() <= bound);
  CHECK(min(l.weight).item() >= -bound);
  // a uniform on [-b, b] has standard deviation b/√3
  CHECK(std::sqrt(var(l.weight).item()) == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.02));
  Conv2d c(8, 16, 3, {}, true, gen);  // fan_in = 8·3·3 = 72
  CHECK(max(abs(c.weight)).item() <= 1.0 / std::sqrt(72.0));
  CHECK(max(abs(c.weight)).item() > 0.9 / std::sqrt(72.0));
  BatchNorm2d bn(4);
  CHECK(bn.weight.to_vector<float>() == std::vector<float>{1, 1, 1, 1});
  CHECK(bn.running_var.to_vector<float>() == std::vector<float>{1, 1, 1, 1});
  // seeded: the same model twice
  Generator a(7), b(7);
  CHECK(build_model("mlp-small", a)->parameters()[0].to_vector<float>() ==
        build_model("mlp-small", b)->parameters()[0].to_vector<float>());
}

TEST_CASE("state_dict round trip and strict loading errors") {
  Generator g1(1), g2(2);
  auto a = build_model("cnn", g1), b = build_model("cnn", g2);
  b->load_state_dict(a->state_dict());
  Tensor x = randn({3, 1, 28, 28});
  CHECK(a->forward(x).to_vector<float>() == b->forward(x).to_vector<float>());
  // loading copies values: b's tensors are its own
  CHECK(b->parameters()[0].storage() != a->parameters()[0].storage());

  StateDict missing = a->state_dict();
  missing.erase("3.bias");
  CHECK_THROWS_WITH_AS(b->load_state_dict(missing), "load_state_dict: missing tensor '3.bias' (shape [64])", Error);
  b->load_state_dict(missing, /*strict=*/false);

  StateDict extra = a->state_dict();
  extra["10.weight"] = zeros({2});
  CHECK_THROWS_WITH_AS(b->load_state_dict(extra), "load_state_dict: unexpected tensor '10.weight' (shape [2]) not in the model",
                       Error);
  StateDict wrong = a->state_dict();
  wrong["7.weight"] = zeros({128, 3000});
  CHECK_THROWS_WITH_AS(b->load_state_dict(wrong),
                       "load_state_dict: tensor '7.weight' has shape [128, 3000] but the model expects [128, 3136]", Error);
  StateDict dtype = a->state_dict();
  dtype["9.bias"] = zeros({10}, {.dtype = DType::f64});
  CHECK_THROWS_WITH_AS(b->load_state_dict(dtype), "load_state_dict: tensor '9.bias' has dtype f64 but the model expects f32",
                       Error);
}

TEST_CASE("layers refuse impossible settings when they are built, not at their first forward") {
  Generator g(1);
  CHECK_THROWS_WITH_AS(Dropout(1.5), "Dropout: probability must be in [0, 1], got 1.5", Error);
  CHECK_THROWS_AS(Dropout(-0.1), Error);
  CHECK_NOTHROW(Dropout(1.0));  // as in PyTorch: every element dropped
  CHECK_THROWS_WITH_AS(BatchNorm2d(0), doctest::Contains("BatchNorm: features (0) and eps (1e-05) must be positive"),
                       Error);
  CHECK_THROWS_AS(BatchNorm1d(4, 0.0), Error);
  CHECK_THROWS_AS(BatchNorm1d(4, 1e-5, 2.0), Error);
  CHECK_THROWS_AS(Linear(0, 3, true, g), Error);
  CHECK_THROWS_AS(Conv2d(3, 4, 3, {.groups = 2}, true, g), Error);
}

TEST_CASE("train() and eval() reach every submodule; BatchNorm tracks statistics only in training") {
  auto m = build_model("resnet-s");
  m->eval();
  auto* block = dynamic_cast<ResidualBlock*>((*m)[3].get());
  REQUIRE(block != nullptr);
  CHECK_FALSE(block->bn1()->is_training());
  Tensor x = randn({4, 1, 28, 28});
  Tensor before = block->bn1()->running_mean.clone();
  {
    NoGradGuard no_grad;
    m->forward(x);
  }
  CHECK(block->bn1()->running_mean.to_vector<float>() == before.to_vector<float>());
  m->train();
  CHECK(block->bn1()->is_training());
  m->forward(x);
  CHECK(block->bn1()->running_mean.to_vector<float>() != before.to_vector<float>());
  CHECK(block->bn1()->num_batches_tracked.item() == 1);
}

TEST_CASE("backward reaches every parameter; zero_grad clears them") {
  auto m = build_model("resnet-s");
  Tensor loss = cross_entropy(m->forward(randn({2, 1, 28, 28})), from_vector<int64_t>({3, 7}, {2}));
  loss.backward();
  for (auto& [name_, p] : m->named_parameters()) {
    const std::string name = name_;  // a plain copy for CAPTURE's lambda (clang 14)
    CAPTURE(name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().shape() == p.shape());
  }
  m->zero_grad();
  for (const Tensor& p : m->parameters()) CHECK_FALSE(p.grad().defined());
}

TEST_CASE("layers compute what their functional ops compute") {
  Generator gen(9);
  Linear l(5, 3, true, gen);
  Tensor x = randn({4, 5});
  // y[n][o] = Σ_i x[n][i] W[o][i] + b[o], by hand in f64.
  std::vector<float> xv = x.to_vector<float>(), wv = l.weight.to_vector<float>(), bv = l.bias.to_vector<float>();
  std::vector<float> y = l(x).to_vector<float>();
  for (int n = 0; n < 4; ++n)
    for (int o = 0; o < 3; ++o) {
      double want = bv[o];
      for (int i = 0; i < 5; ++i) want += double(xv[n * 5 + i]) * wv[o * 5 + i];
      CHECK(y[n * 3 + o] == doctest::Approx(want).epsilon(1e-6));
    }
  // The init bounds PyTorch uses: U(-1/√in, 1/√in).
  for (float w : wv) CHECK(std::abs(w) <= 1 / std::sqrt(5.0f));
  Dropout d(0.5);
  d.eval();
  CHECK(d(x).is_same(x));
  CHECK(Flatten()(zeros({2, 3, 4})).shape() == Shape{2, 12});
  CHECK(MaxPool2d(2)(zeros({1, 1, 4, 4})).shape() == Shape{1, 1, 2, 2});
  CHECK(AdaptiveAvgPool2d({1, 1})(zeros({2, 3, 5, 5})).shape() == Shape{2, 3, 1, 1});
  CHECK_THROWS_WITH_AS(BatchNorm1d(3)(zeros({2, 3, 4, 4})), doctest::Contains("expected a 2-d input"), Error);
  std::string printed = build_model("mlp-small")->str();
  CHECK(printed.find("(1): Linear(in_features=784, out_features=64, bias=true)") != std::string::npos);
}

TEST_CASE("Sequential fuses Linear+ReLU and Conv2d+ReLU: same values and gradients as the layers one by one") {
  Generator gen(21);
  auto net = make<Sequential>();
  net->add(make<Conv2d>(2, 4, 3, Conv2dOptions{.padding = {1, 1}}, true, gen)).add(make<ReLU>());
  net->add(make<Flatten>()).add(make<Linear>(4 * 6 * 6, 7, true, gen)).add(make<ReLU>());
  net->add(make<Linear>(7, 3, true, gen));
  Tensor x = randn({5, 2, 6, 6}, {}, gen);
  Tensor fused = net->forward(x);
  sum(mul(fused, fused)).backward();
  std::vector<std::vector<float>> fused_grads;
  for (const Tensor& p : net->parameters()) fused_grads.push_back(p.grad().to_vector<float>());
  net->zero_grad();

  // The same layers called one at a time (no fusion).
  Tensor h = x;
  for (size_t i = 0; i < net->size(); ++i) h = (*net)[i]->forward(h);
  CHECK(h.to_vector<float>() == fused.to_vector<float>());
  sum(mul(h, h)).backward();
  size_t k = 0;
  for (const Tensor& p : net->parameters()) {
    std::vector<float> g = p.grad().to_vector<float>(), want = fused_grads[k++];
    REQUIRE(g.size() == want.size());
    for (size_t i = 0; i < g.size(); ++i) CHECK(g[i] == doctest::Approx(want[i]).epsilon(1e-5));
  }
}
