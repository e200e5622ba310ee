// tests/test_structured.cpp — structured pruning: the shrunk model computes what
// the masked model does (removed rows zeroed, biases folded), and refuses what
// it cannot do.
#include <doctest/doctest.h>

#include "minidl.h"

using namespace minidl;
using namespace minidl::nn;
using compress::Amount;
using compress::Criterion;

namespace {

// A copy of `model` with the removed output rows of each pruned layer zeroed
// (PyTorch's ln_structured): the reference the shrunk model must reproduce.
ModulePtr masked_copy(const std::string& zoo, Module& model, const std::vector<compress::ChannelPruning>& report) {
  ModulePtr copy = build_model(zoo);
  copy->load_state_dict(model.state_dict());
  copy->eval();
  NoGradGuard no_grad;
  for (const auto& r : report) {
    Module& m = *copy->find(r.layer);
    Tensor w = dynamic_cast<Linear*>(&m) ? dynamic_cast<Linear&>(m).weight : dynamic_cast<Conv2d&>(m).weight;
    std::vector<bool> keep(static_cast<size_t>(r.before), false);
    for (int64_t k : r.kept) keep[k] = true;
    for (int64_t o = 0; o < r.before; ++o)
      if (!keep[o]) w.select(0, o).zero_();
  }
  return copy;
}

// A model with BatchNorm statistics that are not the identity, so folding through them is tested.
std::shared_ptr<Sequential> mlp_with_bn(Generator& gen) {
  auto m = make<Sequential>();
  m->add(make<Flatten>()).add(make<Linear>(20, 16, true, gen)).add(make<BatchNorm1d>(16)).add(make<ReLU>());
  m->add(make<Linear>(16, 12, true, gen)).add(make<GELU>()).add(make<Linear>(12, 5, true, gen));
  NoGradGuard no_grad;
  auto& bn = dynamic_cast<BatchNorm&>(*m->find("2"));
  bn.running_mean.copy_(randn({16}, {}, gen));
  bn.running_var.copy_(rand({16}, {}, gen) + 0.5);
  bn.weight.copy_(randn({16}, {}, gen));
  bn.bias.copy_(randn({16}, {}, gen));
  return m;
}

}  // namespace

TEST_CASE("prune_channels: mlp and cnn shrink and give the masked model's logits") {
  Generator gen(3);
  for (const std::string zoo : {"mlp", "cnn"}) {
    CAPTURE(zoo);
    ModulePtr model = build_model(zoo, gen);
    model->eval();
    const std::vector<std::string> layers = zoo == "mlp" ? std::vector<std::string>{"1", "3"}
                                                          : std::vector<std::string>{"3", "7"};
    ModulePtr original = build_model(zoo);
    original->load_state_dict(model->state_dict());
    const auto report = compress::prune_channels(*model, layers, Amount::fraction(0.5), Criterion::l1);
    REQUIRE(report.size() == 2);
    for (const auto& r : report) {
      CHECK(r.after == r.before / 2);
      CHECK(r.exact);
    }
    ModulePtr masked = masked_copy(zoo, *original, report);
    NoGradGuard no_grad;
    Tensor x = rand({6, 1, 28, 28}, {}, gen);
    CHECK(max(abs(model->forward(x) - masked->forward(x))).item() < 1e-5);
    CHECK(model->parameter_count() < original->parameter_count());
  }
}

TEST_CASE("prune_channels: folds biases through BatchNorm, ReLU and GELU exactly; L2 and random rank") {
  for (Criterion c : {Criterion::l1, Criterion::l2, Criterion::random}) {
    Generator gen(9);
    auto model = mlp_with_bn(gen);
    model->eval();
    auto original = mlp_with_bn(gen);
    original->load_state_dict(model->state_dict());
    original->eval();
    Generator pick(4);
    const auto report = compress::prune_channels(*model, {"1", "4"}, Amount::count(5), c, &pick);
    CHECK(report[0].after == 11);
    CHECK(report[1].after == 7);
    CHECK(dynamic_cast<BatchNorm&>(*model->find("2")).features == 11);
    NoGradGuard no_grad;
    for (const auto& r : report) {
      Tensor w = dynamic_cast<Linear&>(*original->find(r.layer)).weight;
      std::vector<bool> keep(static_cast<size_t>(r.before), false);
      for (int64_t k : r.kept) keep[k] = true;
      for (int64_t o = 0; o < r.before; ++o)
        if (!keep[o]) w.select(0, o).zero_();
    }
    Tensor x = randn({7, 20}, {}, gen);
    CHECK(max(abs(model->forward(x) - original->forward(x))).item() < 1e-5);
  }
}

TEST_CASE("prune_channels: L1 keeps the largest filters") {
  Generator gen(1);
  auto model = make<Sequential>();
  model->add(make<Linear>(3, 4, true, gen)).add(make<ReLU>()).add(make<Linear>(4, 2, true, gen));
  NoGradGuard no_grad;
  dynamic_cast<Linear&>(*model->find("0")).weight.copy_(
      from_vector<float>({1, 1, 1, -0.1f, 0.1f, 0, 3, -3, 0, 0.2f, 0.2f, 0.2f}, {4, 3}));
  const auto report = compress::prune_channels(*model, {"0"}, Amount::fraction(0.5), Criterion::l1);
  CHECK(report[0].kept == std::vector<int64_t>{0, 2});
}

TEST_CASE("prune_channels: a padded conv consumer makes the fold inexact, and says so") {
  Generator gen(2);
  ModulePtr model = build_model("cnn", gen);
  model->eval();
  const auto report = compress::prune_channels(*model, {"0"}, Amount::fraction(0.25), Criterion::l1);
  CHECK_FALSE(report[0].exact);
  CHECK(report[0].note.find("zero-pads") != std::string::npos);
}

TEST_CASE("prune_channels: bad input is refused and nothing changes") {
  Generator gen(2);
  ModulePtr model = build_model("cnn", gen);
  const int64_t params = model->parameter_count();
  CHECK_THROWS_WITH(compress::prune_channels(*model, {"9"}, Amount::fraction(0.5), Criterion::l1),
                    doctest::Contains("is the classifier"));
  CHECK_THROWS_WITH(compress::prune_channels(*model, {"3", "42"}, Amount::fraction(0.5), Criterion::l1),
                    doctest::Contains("no layer '42'"));
  CHECK_THROWS_WITH(compress::prune_channels(*model, {"2"}, Amount::fraction(0.5), Criterion::l1),
                    doctest::Contains("not a Linear or Conv2d"));
  CHECK_THROWS_WITH(compress::prune_channels(*model, {"3"}, Amount::fraction(1.0), Criterion::l1),
                    doctest::Contains("would remove all 64 outputs"));
  CHECK_THROWS_WITH(compress::prune_channels(*model, {"3"}, Amount::fraction(1.5), Criterion::l1),
                    doctest::Contains("outside [0, 1]"));
  CHECK_THROWS_WITH(compress::prune_channels(*model, {"3"}, Amount::count(65), Criterion::l1),
                    doctest::Contains("more than"));
  CHECK_THROWS_WITH(compress::prune_channels(*model, {"3"}, Amount::fraction(0.5), Criterion::random),
                    doctest::Contains("needs a Generator"));
  CHECK(model->parameter_count() == params);
  ModulePtr resnet = build_model("resnet-s", gen);
  CHECK_THROWS_WITH(compress::prune_channels(*resnet, {"0"}, Amount::fraction(0.5), Criterion::l1),
                    doctest::Contains("cannot follow"));
  CHECK_THROWS_WITH(compress::parse_criterion("l3"), doctest::Contains("known: l1, l2, random"));
}

TEST_CASE("prune_channels: the shrunk model saves and loads back from its checkpoint alone") {
  Generator gen(6);
  ModulePtr model = build_model("cnn", gen);
  model->eval();
  compress::prune_channels(*model, {"0", "3", "7"}, Amount::fraction(0.5), Criterion::l2);
  const std::string spec = model->spec().dump();
  ModulePtr rebuilt = module_from_spec(model->spec());
  rebuilt->load_state_dict(model->state_dict());
  rebuilt->eval();
  NoGradGuard no_grad;
  Tensor x = rand({2, 1, 28, 28}, {}, gen);
  CHECK(max(abs(rebuilt->forward(x) - model->forward(x))).item() == 0.0);
  CHECK(spec.find("\"out_channels\":16") != std::string::npos);
}

TEST_CASE("prune_channels: a residual block's conv1 shrinks with bn1 and conv2's inputs") {
  Generator gen(8);
  ModulePtr model = build_model("resnet-s", gen);
  model->eval();
  ModulePtr original = build_model("resnet-s");
  original->load_state_dict(model->state_dict());
  const auto report = compress::prune_channels(*model, {"3.conv1", "4.conv1", "5.conv1"}, Amount::fraction(0.5),
                                               Criterion::l1);
  REQUIRE(report.size() == 3);
  CHECK(report[1].before == 64);
  CHECK(report[1].after == 32);
  CHECK(report[1].consumer == "4.conv2");
  CHECK(dynamic_cast<BatchNorm&>(*model->find("4.bn1")).features == 32);
  CHECK(dynamic_cast<Conv2d&>(*model->find("4.conv2")).in_channels == 32);
  // Fresh BatchNorm statistics map a removed channel's zero to zero: the fold is
  // exact, and the shrunk model gives the masked model's logits.
  for (const auto& r : report) CHECK(r.exact);
  ModulePtr masked = masked_copy("resnet-s", *original, report);
  NoGradGuard no_grad;
  Tensor x = rand({3, 1, 28, 28}, {}, gen);
  CHECK(max(abs(model->forward(x) - masked->forward(x))).item() < 1e-5);
  CHECK(model->parameter_count() < original->parameter_count());
  // With BatchNorm statistics that send the removed channel to a positive constant,
  // conv2's zero padding makes the fold inexact, and the report says so.
  ModulePtr trained = build_model("resnet-s", gen);
  trained->eval();
  dynamic_cast<BatchNorm&>(*trained->find("3.bn1")).bias.fill_(0.5);
  const auto inexact = compress::prune_channels(*trained, {"3.conv1"}, Amount::fraction(0.5), Criterion::l1);
  CHECK_FALSE(inexact[0].exact);
  CHECK_THROWS_WITH(compress::prune_channels(*model, {"3.conv2"}, Amount::fraction(0.5), Criterion::l1),
                    doctest::Contains("only a residual block's conv1"));
}

TEST_CASE("prunable_layers: what channel pruning can take in each zoo model") {
  CHECK(compress::prunable_layers(*build_model("mlp")) == std::vector<std::string>{"1", "3"});
  CHECK(compress::prunable_layers(*build_model("cnn")) == std::vector<std::string>{"0", "3", "7"});
  CHECK(compress::prunable_layers(*build_model("resnet-s")) ==
        std::vector<std::string>{"3.conv1", "4.conv1", "5.conv1"});
}

TEST_CASE("prune_residual_groups: resnet-s loses the same channels across every residual add, exactly") {
  Generator gen(12);
  ModulePtr model = build_model("resnet-s", gen);
  NoGradGuard no_grad;
  // Trained-looking BatchNorm statistics everywhere, so a removed channel would
  // leave a constant behind unless its BatchNorms are removed with it.
  for (auto& [name, m] : model->named_modules())
    if (auto* bn = dynamic_cast<BatchNorm*>(m.get())) {
      bn->running_mean.copy_(randn({bn->features}, {}, gen) * 0.1);
      bn->running_var.copy_(rand({bn->features}, {}, gen) + 0.5);
      bn->weight.copy_(rand({bn->features}, {}, gen) + 0.5);
      bn->bias.copy_(randn({bn->features}, {}, gen) * 0.1);
    }
  model->eval();
  ModulePtr masked = build_model("resnet-s");
  masked->load_state_dict(model->state_dict());
  masked->eval();
  const auto report = compress::prune_residual_groups(*model, Amount::fraction(0.25), Criterion::l2);
  REQUIRE(report.size() == 3);
  CHECK(report[0].layer == "0 + 3.conv2");
  CHECK(report[0].consumer == "3.conv1, 4.conv1, 4.shortcut.0");
  CHECK(report[1].layer == "4.conv2 + 4.shortcut.0");
  CHECK(report[1].consumer == "5.conv1, 5.shortcut.0");
  CHECK(report[2].consumer == "8");
  CHECK(report[2].after == 96);
  CHECK(dynamic_cast<Linear&>(*model->find("8")).in_features == 96);
  CHECK(dynamic_cast<Conv2d&>(*model->find("4.shortcut.0")).in_channels == 24);
  // The reference: each removed channel zeroed in its producers and its BatchNorms.
  const std::vector<std::vector<std::string>> producers = {{"0", "3.conv2"}, {"4.conv2", "4.shortcut.0"},
                                                           {"5.conv2", "5.shortcut.0"}};
  const std::vector<std::vector<std::string>> norms = {{"1", "3.bn2"}, {"4.bn2", "4.shortcut.1"},
                                                       {"5.bn2", "5.shortcut.1"}};
  for (size_t g = 0; g < 3; ++g) {
    std::vector<bool> keep(static_cast<size_t>(report[g].before), false);
    for (int64_t k : report[g].kept) keep[k] = true;
    for (int64_t c = 0; c < report[g].before; ++c) {
      if (keep[c]) continue;
      for (const std::string& p : producers[g]) dynamic_cast<Conv2d&>(*masked->find(p)).weight.select(0, c).zero_();
      for (const std::string& b : norms[g]) {
        auto& bn = dynamic_cast<BatchNorm&>(*masked->find(b));
        bn.weight.select(0, c).zero_();
        bn.bias.select(0, c).zero_();
      }
    }
  }
  Tensor x = rand({3, 1, 28, 28}, {}, gen);
  CHECK(max(abs(model->forward(x) - masked->forward(x))).item() < 1e-5);
  // The blocks' inner convolutions can go too, afterwards.
  compress::prune_channels(*model, compress::prunable_layers(*model), Amount::fraction(0.5), Criterion::l1);
  CHECK(model->forward(x).shape() == Shape{3, 10});
  ModulePtr cnn = build_model("cnn");
  // Plain chains are groups too; without a BatchNorm to zero, a biased producer's
  // removed channels still output their bias, and the report says the result is not exact.
  const auto plain = compress::prune_residual_groups(*cnn, Amount::fraction(0.5), Criterion::l1);
  REQUIRE(plain.size() == 2);
  CHECK_FALSE(plain[0].exact);
  CHECK(plain[0].note.find("prune_channels") != std::string::npos);
  CHECK_THROWS_WITH(compress::prune_residual_groups(*build_model("resnet-s"), Amount::fraction(1.0), Criterion::l1),
                    doctest::Contains("would remove all 32 channels"));
}
