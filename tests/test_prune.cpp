// tests/test_prune.cpp — unstructured pruning: which weights go, total-sparsity
// amounts, masks of one byte, zeros that stay zero through fine-tuning, errors.
#include <doctest/doctest.h>


#include "compress/prune.h"
#include "minidl.h"
#include "temp_dir.h"

using namespace minidl;
using namespace minidl::nn;
using compress::Amount;
using compress::Pruner;

namespace {
// A two-layer model whose first weight is set by hand.
std::shared_ptr<Sequential> tiny(const std::vector<float>& w1) {
  Generator gen(1);
  auto m = make<Sequential>();
  m->add(make<Linear>(4, 2, true, gen)).add(make<ReLU>()).add(make<Linear>(2, 3, true, gen));
  NoGradGuard no_grad;
  dynamic_cast<Linear&>(*m->find("0")).weight.copy_(from_vector<float>(w1, {2, 4}));
  return m;
}
std::vector<float> weights(Module& m, const std::string& path) {
  return dynamic_cast<Linear&>(*m.find(path)).weight.to_vector<float>();
}
}  // namespace

TEST_CASE("l1_unstructured removes the smallest |w|, ties to the lower index; amounts are totals") {
  auto m = tiny({0.5f, -0.1f, 0.3f, -0.7f, 0.1f, 0.9f, -0.2f, 0.05f});
  Pruner p(*m);
  p.l1_unstructured("0.weight", Amount::fraction(0.25));  // 2 of 8: 0.05 and the first 0.1 (index 1)
  CHECK(weights(*m, "0") == std::vector<float>{0.5f, 0, 0.3f, -0.7f, 0.1f, 0.9f, -0.2f, 0});
  CHECK(p.masks().at("0.weight").dtype() == DType::boolean);  // one byte per weight
  CHECK(element_size(p.masks().at("0.weight").dtype()) == 1);
  CHECK(p.sparsity("0.weight") == 0.25);
  // To a total of 50%: two more (0.1 at index 4, then 0.2), the first two stay pruned.
  p.l1_unstructured("0.weight", Amount::fraction(0.5));
  CHECK(weights(*m, "0") == std::vector<float>{0.5f, 0, 0.3f, -0.7f, 0, 0.9f, 0, 0});
  // A smaller total than already pruned changes nothing; a count works too.
  p.l1_unstructured("0.weight", Amount::fraction(0.1));
  CHECK(p.sparsity("0.weight") == 0.5);
  p.l1_unstructured("0.weight", Amount::count(7));
  CHECK(weights(*m, "0") == std::vector<float>{0, 0, 0, 0, 0, 0.9f, 0, 0});
  CHECK(p.recipe().size() == 4);
  CHECK(p.recipe()[0]["method"] == "l1_unstructured");
  CHECK(p.recipe()[0]["amount"]["fraction"] == 0.25);
  CHECK(p.recipe()[3]["amount"]["count"] == 7);
}

TEST_CASE("global_unstructured uses one threshold across layers") {
  auto m = tiny({1, 2, 3, 4, 5, 6, 7, 8});
  NoGradGuard no_grad;
  dynamic_cast<Linear&>(*m->find("2")).weight.copy_(from_vector<float>({0.5f, 9, 10, 11, 12, 13}, {3, 2}));
  Pruner p(*m);
  // 4 of the 14 weights: 0.5 from layer 2, then 1, 2, 3 from layer 0.
  p.global_unstructured({"0.weight", "2.weight"}, Amount::count(4));
  CHECK(weights(*m, "0") == std::vector<float>{0, 0, 0, 4, 5, 6, 7, 8});
  CHECK(weights(*m, "2") == std::vector<float>{0, 9, 10, 11, 12, 13});
  CHECK(p.sparsity("0.weight") == 3.0 / 8);
  CHECK(p.sparsity("2.weight") == 1.0 / 6);
  CHECK(p.recipe()[0]["params"] == nlohmann::json{"0.weight", "2.weight"});
}

TEST_CASE("random_unstructured prunes exactly the amount, only among kept weights, reproducibly") {
  std::vector<float> w(8, 1.0f);
  auto a = tiny(w), b = tiny(w);
  Generator g1(5), g2(5);
  Pruner pa(*a), pb(*b);
  pa.random_unstructured("0.weight", Amount::fraction(0.5), g1);
  pb.random_unstructured("0.weight", Amount::fraction(0.5), g2);
  CHECK(weights(*a, "0") == weights(*b, "0"));
  CHECK(pa.sparsity("0.weight") == 0.5);
  std::vector<float> half = weights(*a, "0");
  pa.random_unstructured("0.weight", Amount::fraction(0.75), g1);
  std::vector<float> more = weights(*a, "0");
  CHECK(pa.sparsity("0.weight") == 0.75);
  for (size_t i = 0; i < 8; ++i)
    if (half[i] == 0) CHECK(more[i] == 0);  // once pruned, pruned
}

TEST_CASE("bad pruning requests are clear errors and change nothing") {
  auto m = tiny({1, 2, 3, 4, 5, 6, 7, 8});
  Pruner p(*m);
  CHECK_THROWS_WITH_AS(p.l1_unstructured("0.weight", Amount::fraction(1.5)),
                       doctest::Contains("l1_unstructured: amount 1.5 is outside [0, 1]"), Error);
  CHECK_THROWS_WITH_AS(p.l1_unstructured("0.weight", Amount::count(9)),
                       doctest::Contains("amount 9 is more than the 8 elements of '0.weight'"), Error);
  CHECK_THROWS_WITH_AS(p.l1_unstructured("0.weight", Amount::count(-1)), doctest::Contains("negative"), Error);
  CHECK_THROWS_WITH_AS(p.l1_unstructured("5.weight", Amount::fraction(0.5)),
                       doctest::Contains("the model has no parameter '5.weight' (it has: 0.weight, 0.bias"), Error);
  CHECK_THROWS_WITH_AS(p.global_unstructured({}, Amount::fraction(0.5)), doctest::Contains("no parameters"), Error);
  CHECK_THROWS_WITH_AS(p.remove("0.weight"), doctest::Contains("'0.weight' has not been pruned"), Error);
  CHECK(p.masks().empty());
  CHECK(weights(*m, "0") == std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8});
}

TEST_CASE("pruned weights stay exactly zero through fine-tuning; remove makes it permanent") {
  ImageDataset train = load_mnist_format(kFashionMnistDir, "train").subset(1024);
  ImageDataset test = load_mnist_format(kFashionMnistDir, "t10k").subset(256);
  TrainConfig c{.model = "mlp-small", .epochs = 1, .batch = 64, .lr = 3e-3, .seed = 2};
  auto model = build_model(c);
  Pruner pruner(*model);
  pruner.global_unstructured({"1.weight", "3.weight"}, Amount::fraction(0.9));
  const double before = pruner.sparsity("1.weight");
  CHECK(before > 0.85);
  Trainer trainer(model, c, {.after_step = pruner.after_step()});
  EpochResult r = trainer.run_epoch(train, test);
  CHECK(r.test.accuracy > 0.5);
  // Every masked weight is still exactly 0, and so are its Adam moments.
  for (const auto& [name, mask] : pruner.masks()) {
    std::vector<bool> keep = mask.to_vector<bool>();
    std::vector<float> w = model->state_dict().at(name).to_vector<float>();
    std::vector<float> m = trainer.optimizer().state_dict().at("exp_avg." + name).to_vector<float>();
    int64_t bad = 0;
    for (size_t i = 0; i < keep.size(); ++i) bad += !keep[i] && (w[i] != 0 || m[i] != 0);
    CHECK(bad == 0);
  }
  CHECK(pruner.sparsity("1.weight") == before);
  // Without the hook the zeros would fill in: one step of AdamW moves them.
  pruner.remove("1.weight");
  Trainer free(model, c);
  free.run_epoch(train.subset(128), test.subset(64));
  CHECK(pruner.sparsity("1.weight") < before);
  CHECK(pruner.recipe().back()["method"] == "remove");
}

TEST_CASE("a pruned checkpoint keeps masks and recipe, loads back, and corrupt ones are clear errors") {
  minidl::testing::TempDir dir;
  TrainConfig c{.model = "mlp-small", .epochs = 1, .seed = 3};
  auto model = build_model(c);
  Pruner pruner(*model);
  pruner.l1_unstructured("1.weight", Amount::fraction(0.8)).l1_unstructured("3.weight", Amount::count(100));
  Trainer trainer(model, c);
  const std::string path = dir / "pruned.safetensors";
  trainer.save(path, pruner.checkpoint_tensors(), pruner.checkpoint_metadata());

  // load_model sees the model alone; the masks and recipe come back onto it.
  ModulePtr loaded = load_model(path);
  SafeTensors file = load_safetensors(path);
  Pruner again(*loaded);
  again.load_from(file, path);
  CHECK(again.recipe() == pruner.recipe());
  REQUIRE(again.masks().size() == 2);
  for (const auto& [name, mask] : pruner.masks())
    CHECK(again.masks().at(name).to_vector<bool>() == mask.to_vector<bool>());
  CHECK(again.sparsity("1.weight") == doctest::Approx(0.8).epsilon(1e-3));
  // Resuming training ignores the pruning section.
  Trainer resumed(build_model(c), c);
  CHECK_NOTHROW(resumed.resume(path));

  auto refused = [&](auto mutate, const char* expected) {
    SafeTensors f = file;
    mutate(f);
    Pruner p(*loaded);
    CHECK_THROWS_WITH_AS(p.load_from(f, "pruned.safetensors"), doctest::Contains(expected), Error);
  };
  refused([](SafeTensors& f) { f.tensors["pruning.mask.1.weight"] = ones({3}, {.dtype = DType::boolean}); },
          "'pruning.mask.1.weight' must be a bool mask of shape [64, 784]");
  refused([](SafeTensors& f) { f.tensors["pruning.mask.9.weight"] = f.tensors.at("pruning.mask.3.weight"); },
          "tensor 'pruning.mask.9.weight': load pruning masks: the model has no parameter '9.weight'");
  refused([](SafeTensors& f) { f.tensors["pruning.extra"] = ones({1}); }, "unexpected pruning tensor 'pruning.extra'");
  refused([](SafeTensors& f) { f.metadata["pruning"] = "{not json"; }, "metadata 'pruning' is not a JSON array");
  refused(
      [](SafeTensors& f) {
        f.tensors["pruning.mask.3.weight"] =
            zeros(f.tensors.at("pruning.mask.3.weight").shape(), {.dtype = DType::boolean});
      },
      "prunes weights of '3.weight' that are not zero in the file");
  CHECK_THROWS_WITH_AS(trainer.save(path, {{"mask", ones({1})}}), doctest::Contains("must be in a checkpoint section"),
                       Error);
}

TEST_CASE("AGP: the cubic schedule, and a gradual prune during fine-tuning that ends at the target") {
  const compress::AgpSchedule s{.initial = 0.0, .final = 0.8, .begin_step = 10, .end_step = 20, .every = 2};
  CHECK(s.sparsity_at(0) == 0.0);
  CHECK(s.sparsity_at(10) == 0.0);
  CHECK(s.sparsity_at(15) == doctest::Approx(0.8 - 0.8 * 0.125));  // half way: 1 − (1/2)³ of the way there
  CHECK(s.sparsity_at(20) == doctest::Approx(0.8));
  CHECK(s.sparsity_at(99) == doctest::Approx(0.8));
  ImageDataset train = load_mnist_format(kFashionMnistDir, "train").subset(640);
  ImageDataset test = load_mnist_format(kFashionMnistDir, "t10k").subset(128);
  TrainConfig c{.model = "mlp-small", .epochs = 1, .batch = 64, .lr = 3e-3, .seed = 2};  // 10 steps
  auto model = build_model(c);
  Pruner pruner(*model);
  std::vector<double> seen;
  auto gradual = pruner.gradual({"1.weight", "3.weight"}, {.final = 0.75, .begin_step = 2, .end_step = 8, .every = 3});
  Trainer trainer(model, c, {.after_step = [&](Trainer& t, int64_t step) {
                               gradual(t, step);
                               seen.push_back(pruner.sparsity("1.weight"));
                             }});
  trainer.run_epoch(train, test);
  REQUIRE(seen.size() == 10);
  CHECK(seen[0] == 0.0);                   // before begin_step
  CHECK(seen[1] == 0.0);                   // step 2 = begin: s = initial = 0
  CHECK(seen[4] > 0.5);                    // step 5: s = 0.75 (1 − 1/8) globally
  CHECK(seen[5] == seen[4]);               // between pruning steps nothing changes
  CHECK(seen[7] >= seen[4]);               // step 8 = end: the final sparsity
  const double total = (pruner.sparsity("1.weight") * 784 * 64 + pruner.sparsity("3.weight") * 640) / (784 * 64 + 640);
  CHECK(total == doctest::Approx(0.75).epsilon(0.01));
  CHECK(pruner.recipe().size() == 1);
  CHECK(pruner.recipe()[0]["method"] == "agp_global_unstructured");
  CHECK_THROWS_WITH(pruner.gradual({"nope.weight"}, {}), doctest::Contains("nope.weight"));
  CHECK_THROWS_WITH(pruner.gradual({"1.weight"}, {.initial = 0.5, .final = 0.2}), doctest::Contains("initial"));
}

TEST_CASE("sensitivity prunes one layer at a time and puts every weight back") {
  auto m = tiny({0.5f, -0.1f, 0.3f, -0.7f, 0.1f, 0.9f, -0.2f, 0.05f});
  StateDict before;
  for (const auto& [name, t] : m->state_dict()) before[name] = t.clone();  // copies, not the live tensors
  std::vector<std::vector<float>> seen;
  // The "accuracy": the first layer's weights as the callback sees them, and a number from them.
  const auto points = compress::sensitivity(*m, {"0.weight", "2.weight"}, {0.25, 0.75}, [&](Module& model) {
    seen.push_back(weights(model, "0"));
    return static_cast<double>(seen.size());
  });
  REQUIRE(points.size() == 4);
  CHECK(points[1].param == "0.weight");
  CHECK(points[1].sparsity == 0.75);
  CHECK(points[3].accuracy == 4.0);
  CHECK(seen[0] == std::vector<float>{0.5f, 0, 0.3f, -0.7f, 0.1f, 0.9f, -0.2f, 0});  // 25% of layer 0
  CHECK(seen[1] == std::vector<float>{0, 0, 0, -0.7f, 0, 0.9f, 0, 0});                // 75% of layer 0
  CHECK(seen[2] == std::vector<float>{0.5f, -0.1f, 0.3f, -0.7f, 0.1f, 0.9f, -0.2f, 0.05f});  // layer 2's turn: 0 intact
  for (const auto& [name, t] : m->state_dict()) CHECK(t.to_vector<float>() == before.at(name).to_vector<float>());
  CHECK_THROWS_WITH(compress::sensitivity(*m, {"9.weight"}, {0.5}, [](Module&) { return 0.0; }),
                    doctest::Contains("no parameter '9.weight'"));
  CHECK_THROWS_WITH(compress::sensitivity(*m, {"0.weight"}, {1.5}, [](Module&) { return 0.0; }),
                    doctest::Contains("outside [0, 1]"));
}
