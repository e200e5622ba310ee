// tests/test_spec.cpp — models that describe themselves (specs), layers that can
// be replaced, and the training loop's model / loss / hooks.
#include <doctest/doctest.h>


#include "minidl.h"
#include "nn/safetensors.h"
#include "nn/spec.h"
#include "nn/train.h"
#include "temp_dir.h"

using namespace minidl;
using namespace minidl::nn;
using minidl::testing::TempDir;

namespace {
// A layer of the user's own: y = x · scale. It does not fuse, so Sequential must
// run it and then the ReLU after it.
class Scale : public Module {
 public:
  explicit Scale(double s) : s(s) {}
  Tensor forward(const Tensor& x) override {
    ++calls;
    return mul(x, s);
  }
  std::string describe() const override { return "Scale"; }
  nlohmann::json hyper_parameters() const override { return {{"type", "Scale"}, {"scale", s}}; }
  double s;
  int calls = 0;
};

// A hand-built model that is none of the zoo's: conv, BN, pool, dropout, GELU, linear.
std::shared_ptr<Sequential> hand_built(Generator& gen) {
  auto m = make<Sequential>();
  m->add(make<Conv2d>(1, 4, 3, Conv2dOptions{.stride = {2, 2}, .padding = {1, 1}}, true, gen))
      .add(make<BatchNorm2d>(4))
      .add(make<ReLU>())
      .add(make<AvgPool2d>(2))
      .add(make<Flatten>())
      .add(make<Linear>(4 * 7 * 7, 24, true, gen))
      .add(make<GELU>())
      .add(make<Dropout>(0.1, 5))
      .add(make<Linear>(24, 10, false, gen));
  return m;
}

std::vector<std::string> names_of(const NamedTensors& named) {
  std::vector<std::string> out;
  for (const auto& [n, t] : named) out.push_back(n);
  return out;
}
}  // namespace

TEST_CASE("every zoo model's spec rebuilds the same layer tree with the same tensor names") {
  for (const std::string& name : model_names()) {
    CAPTURE(name);
    auto m = build_model(name);
    nlohmann::json spec = m->spec();
    ModulePtr rebuilt = module_from_spec(spec);
    CHECK(rebuilt->spec() == spec);
    CHECK(rebuilt->str() == m->str());
    CHECK(names_of(rebuilt->named_parameters()) == names_of(m->named_parameters()));
    CHECK(names_of(rebuilt->named_buffers()) == names_of(m->named_buffers()));
    rebuilt->load_state_dict(m->state_dict());
    m->eval(), rebuilt->eval();
    Tensor x = randn({2, 1, 28, 28});
    CHECK(rebuilt->forward(x).to_vector<float>() == m->forward(x).to_vector<float>());
  }
  CHECK(
      build_model("mlp-small")->spec().dump() ==
      R"({"children":[{"name":"0","spec":{"type":"Flatten"}},)"
      R"({"name":"1","spec":{"bias":true,"in_features":784,"out_features":64,"type":"Linear"}},)"
      R"({"name":"2","spec":{"type":"ReLU"}},)"
      R"({"name":"3","spec":{"bias":true,"in_features":64,"out_features":10,"type":"Linear"}}],"type":"Sequential"})");
}

TEST_CASE("bad specs are clear errors naming where in the tree") {
  auto spec = build_model("cnn")->spec();
  auto bad = [&](auto mutate, const char* expected) {
    nlohmann::json s = spec;
    mutate(s);
    CHECK_THROWS_WITH_AS(module_from_spec(s), doctest::Contains(expected), Error);
  };
  bad([](auto& s) { s["children"][0]["spec"]["type"] = "Conv3d"; }, "model spec at 0: unknown layer type 'Conv3d'");
  bad([](auto& s) { s["children"][0]["spec"].erase("kernel_size"); }, "model spec at 0: missing 'kernel_size'");
  bad([](auto& s) { s["children"][0]["spec"]["kernel_size"] = -3; }, "'kernel_size' = -3 is outside [1, 64]");
  bad([](auto& s) { s["children"][0]["spec"]["kernel_size"] = "3"; }, "'kernel_size' must be an integer");
  bad([](auto& s) { s["children"][0]["spec"]["stride"] = {1}; }, "'stride' must be two integers");
  bad([](auto& s) { s["children"][7]["spec"]["in_features"] = 18446744073709551615ull; }, "is outside [1, 16777216]");
  bad([](auto& s) { s["children"][1]["name"] = "x"; }, "child 1 is named 'x'");
  bad(
      [](auto& s) {
        s["children"][2]["spec"]["children"] = nlohmann::json::array({{{"name", "0"}, {"spec", s}}});
      },
      "model spec at 2: this layer type has no children");
  bad([](auto& s) { s = nlohmann::json::array(); }, "model spec at the root: expected an object");
  // A spec asking for more parameters than a checkpoint holds never allocates them.
  nlohmann::json huge = {{"type", "Linear"}, {"in_features", 1 << 24}, {"out_features", 1 << 24}, {"bias", true}};
  CHECK_THROWS_WITH_AS(module_from_spec(huge, 1000), doctest::Contains("needs 281474993487872 parameter elements"),
                       Error);
  // Nesting deeper than the reader allows.
  nlohmann::json deep = {{"type", "Sequential"}};
  for (int i = 0; i < 100; ++i) deep = {{"type", "Sequential"}, {"children", {{{"name", "0"}, {"spec", deep}}}}};
  CHECK_THROWS_WITH_AS(module_from_spec(deep), doctest::Contains("nested deeper than 64 levels"), Error);
}

TEST_CASE("a replaced layer runs in place of the old one, also nested; a layer that cannot fuse declines") {
  Generator gen(2);
  auto m = build_model("mlp-small", gen);
  Tensor x = randn({3, 1, 28, 28});
  m->eval();
  Tensor before = m->forward(x);
  auto scale = std::make_shared<Scale>(-1.0);
  // Flatten, Linear, ReLU, Linear: wrap the first Linear's output in a Scale(-1) by
  // replacing the ReLU's input layer pair: 1 -> Sequential(Linear, Scale).
  auto old = m->replace("1", make<Sequential>(std::vector<ModulePtr>{m->find("1"), scale}));
  CHECK(dynamic_cast<Linear*>(old.get()) != nullptr);
  CHECK(m->find("1.1").get() == scale.get());
  Tensor after = m->forward(x);
  CHECK(scale->calls == 1);
  // relu(-h) instead of relu(h): the output differs, and equals what the ops give.
  auto* l1 = dynamic_cast<Linear*>(m->find("1.0").get());
  auto* l3 = dynamic_cast<Linear*>(m->find("3").get());
  Tensor expected = linear(relu(neg(linear(x.flatten(1), l1->weight, l1->bias))), l3->weight, l3->bias);
  CHECK(after.to_vector<float>() == expected.to_vector<float>());
  CHECK(after.to_vector<float>() != before.to_vector<float>());

  // Directly before a ReLU, a layer that does not fuse is run, then the ReLU.
  auto seq = make<Sequential>(std::vector<ModulePtr>{std::make_shared<Scale>(-2.0), make<ReLU>()});
  Tensor v = from_vector<float>({1, -1, 3}, {3});
  CHECK(seq->forward(v).to_vector<float>() == std::vector<float>{0, 2, 0});

  // Nested: a residual block's conv1 inside resnet-s.
  auto r = build_model("resnet-s");
  auto conv1 = r->find("4.conv1");
  REQUIRE(dynamic_cast<Conv2d*>(conv1.get()) != nullptr);
  auto wrapped = std::make_shared<Sequential>(std::vector<ModulePtr>{conv1, std::make_shared<Scale>(0.0)});
  r->replace("4.conv1", wrapped);
  CHECK(r->find("4.conv1").get() == wrapped.get());
  CHECK(r->named_parameters().size() == build_model("resnet-s")->named_parameters().size());
  r->eval();
  CHECK_NOTHROW(r->forward(randn({1, 1, 28, 28})));
  CHECK_THROWS_WITH_AS(dynamic_cast<ResidualBlock&>(*r->find("4")).conv1(),
                       doctest::Contains("child 'conv1' is a Sequential, not the dense layer"), Error);

  CHECK_THROWS_WITH_AS(r->replace("4.conv9", scale), doctest::Contains("no child named 'conv9'"), Error);
  CHECK_THROWS_WITH_AS(r->find("12"), doctest::Contains("no child named '12'"), Error);
  CHECK_THROWS_WITH_AS(r->replace("4.conv1", nullptr), doctest::Contains("replacement for '4.conv1' is null"), Error);
}

TEST_CASE("a hand-built model trains with a custom loss and hooks, saves, and loads back without naming it") {
  ImageDataset train = load_mnist_format(kFashionMnistDir, "train").subset(1024);
  ImageDataset test = load_mnist_format(kFashionMnistDir, "t10k").subset(256);
  Generator gen(4);
  auto model = hand_built(gen);
  auto* head = dynamic_cast<Linear*>(model->find("8").get());
  REQUIRE(head != nullptr);

  // A pruning-style hook: half of the head's weights are masked to zero after every
  // optimizer step; an epoch hook records what it saw; the loss is label-smoothed
  // cross-entropy plus an L2 penalty on the logits (a loss no zoo default has).
  Tensor mask = ge(rand(head->weight.shape(), {}, gen), 0.5).to(DType::f32);
  int64_t steps_seen = 0, epochs_seen = 0, loss_calls = 0;
  double last_test = -1;
  TrainConfig c{.model = "custom", .epochs = 2, .batch = 64, .lr = 1e-2, .seed = 4};
  Trainer trainer(model, c,
                  {.loss =
                       [&](const Tensor& logits, const Batch& b) {
                         ++loss_calls;
                         return add(cross_entropy(logits, b.labels, {.label_smoothing = 0.1}),
                                    mul(mean(mul(logits, logits)), 1e-3));
                       },
                   .after_step =
                       [&](Trainer& t, int64_t step) {
                         CHECK(step == steps_seen + 1);
                         steps_seen = step;
                         NoGradGuard no_grad;
                         Tensor& w = dynamic_cast<Linear&>(*t.model().find("8")).weight;
                         w.copy_(mul(w, mask));
                       },
                   .after_epoch =
                       [&](Trainer& t, const EpochResult& r) {
                         ++epochs_seen;
                         CHECK(r.epoch == t.epochs_done());
                         last_test = r.test.accuracy;
                       }});
  EpochResult e1 = trainer.run_epoch(train, test);
  EpochResult e2 = trainer.run_epoch(train, test);
  CHECK(steps_seen == 2 * 16);
  CHECK(loss_calls == 2 * 16);
  CHECK(epochs_seen == 2);
  CHECK(last_test == e2.test.accuracy);
  CHECK(e2.train_loss < e1.train_loss);
  CHECK(e2.test.accuracy > 0.5);  // learned something (chance is 0.1)
  // The masked weights are exactly zero after training.
  std::vector<float> w = head->weight.to_vector<float>(), m = mask.to_vector<float>();
  int64_t zeros_where_masked = 0, masked = 0;
  for (size_t i = 0; i < w.size(); ++i)
    if (m[i] == 0) ++masked, zeros_where_masked += w[i] == 0.0f;
  CHECK(masked > 0);
  CHECK(zeros_where_masked == masked);

  TempDir dir;
  trainer.save(dir / "custom.safetensors");
  SafeTensors file = load_safetensors(dir / "custom.safetensors");
  CHECK(file.metadata.at("arch") == "custom");
  std::string description;
  ModulePtr loaded = load_model(dir / "custom.safetensors", &description);
  CHECK(description == "custom");
  CHECK(loaded->spec() == model->spec());
  EvalResult a = evaluate(*model, test), b = evaluate(*loaded, test);
  CHECK(a.accuracy == b.accuracy);
  CHECK(a.loss == b.loss);

  // Resuming into a different model is refused; into the same one it continues.
  Generator g2(4);
  CHECK_THROWS_WITH_AS(Trainer(build_model("mlp-small", g2), c).resume(dir / "custom.safetensors"),
                       doctest::Contains("checkpoint holds a different model"), Error);
  Generator g3(9);
  Trainer again(hand_built(g3), c);
  again.resume(dir / "custom.safetensors");
  CHECK(again.epochs_done() == 2);
  CHECK(evaluate(again.model(), test).accuracy == a.accuracy);
}

TEST_CASE("optimizer state is keyed by parameter name; a changed model is a clear error on resume") {
  Generator gen(1);
  auto m = build_model("mlp-small", gen);
  AdamW opt(m->named_parameters(), {});
  Tensor loss = cross_entropy(m->forward(randn({4, 1, 28, 28})), from_vector<int64_t>({1, 2, 3, 4}, {4}));
  loss.backward();
  opt.step();
  StateDict state = opt.state_dict();
  CHECK(state.count("exp_avg.1.weight") == 1);
  CHECK(state.count("exp_avg_sq.3.bias") == 1);
  CHECK(state.at("step").item() == 1);

  // The same names into a wider model: the shapes no longer match.
  Generator g2(1);
  auto wider = make<Sequential>();
  wider->add(make<Flatten>())
      .add(make<Linear>(784, 80, true, g2))
      .add(make<ReLU>())
      .add(make<Linear>(80, 10, true, g2));
  AdamW other(wider->named_parameters(), {});
  CHECK_THROWS_WITH_AS(other.load_state_dict(state),
                       doctest::Contains("'exp_avg.1.bias' has shape [64] but parameter '1.bias' has shape [80]"),
                       Error);
  // A name the model does not have.
  StateDict renamed = state;
  renamed["exp_avg.7.weight"] = renamed.at("exp_avg.1.weight");
  AdamW same(m->named_parameters(), {});
  CHECK_THROWS_WITH_AS(
      same.load_state_dict(renamed),
      doctest::Contains("'exp_avg.7.weight' is for parameter '7.weight', which the model does not have"), Error);
  CHECK(same.steps() == 0);  // a refused state changes nothing
  same.load_state_dict(state);
  CHECK(same.steps() == 1);
}

TEST_CASE("optimizer steps update bf16 parameters with f32 state") {
  // The same SGD-with-momentum step on f32 and bf16 copies of one parameter.
  Tensor p32 = from_vector<float>({0.5f, -1.25f, 2.0f, 3.0f}, {4}).requires_grad_(true);
  Tensor p16 = p32.detach().to(DType::bf16).requires_grad_(true);
  Tensor g = from_vector<float>({0.25f, 0.5f, -1.0f, 0.125f}, {4});
  p32.set_grad(g);
  p16.set_grad(g.to(DType::bf16));
  SGD a(std::vector<Tensor>{p32}, {.lr = 0.5, .momentum = 0.9});
  SGD b(std::vector<Tensor>{p16}, {.lr = 0.5, .momentum = 0.9});
  a.step(), b.step();
  CHECK(b.state_dict().at("momentum_buffer.0").dtype() == DType::f32);
  // 0.5 - 0.5·0.25 = 0.375, -1.25 - 0.25 = -1.5, 2 + 0.5 = 2.5, 3 - 0.0625 = 2.9375: exact in bf16 too.
  CHECK(p32.to_vector<float>() == std::vector<float>{0.375f, -1.5f, 2.5f, 2.9375f});
  CHECK(p16.to(DType::f32).to_vector<float>() == std::vector<float>{0.375f, -1.5f, 2.5f, 2.9375f});
  Adam adam(std::vector<Tensor>{p16}, {.lr = 0.1});
  adam.step();
  // Adam's first step moves each weight by lr·sign(g) (up to eps), rounded to bf16.
  std::vector<float> after = p16.to(DType::f32).to_vector<float>();
  CHECK(after[0] == doctest::Approx(0.275).epsilon(0.01));
  CHECK(after[2] == doctest::Approx(2.6).epsilon(0.01));
}
