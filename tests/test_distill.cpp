// tests/test_distill.cpp — the fused distillation loss (ops/loss.h,
// ops/cpu/softmax.cpp) against the same loss composed from separate ops, its
// gradient against finite differences, and the two bugs it exists to rule out:
// averaging the KL over batch × classes instead of the batch, and leaving out T².
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "gradcheck.h"
#include "minidl.h"

using namespace minidl;
using doctest::Approx;
using minidl::testing::gradcheck;
using minidl::testing::leaf;

namespace {
// The textbook form, op by op: α T² KL_batchmean(log_softmax(s/T), softmax(t/T)) + (1 − α) CE(s, y).
Tensor composed_loss(const Tensor& s, const Tensor& t, const Tensor& y, double T, double alpha) {
  const Tensor inv_t = scalar_like(1.0 / T, s);
  Tensor kl = kl_div(log_softmax(mul(s, inv_t), 1), softmax(mul(t, inv_t), 1), Reduction::batchmean);
  return add(mul(kl, scalar_like(alpha * T * T, kl)), mul(cross_entropy(s, y), scalar_like(1 - alpha, kl)));
}

Tensor random_labels(int64_t n, int64_t classes, uint64_t seed) {
  Generator gen(seed);
  return randint(0, classes, {n}, {}, gen);
}

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}
}  // namespace

TEST_CASE("distillation_loss equals the composed ops to 1e-6 in f32, value and gradient") {
  Generator gen(71);
  for (int64_t classes : {10, 37, 1000})
    for (double T : {1.0, 4.0, 8.0})
      for (double alpha : {0.0, 0.5, 0.9, 1.0}) {
        CAPTURE(classes);
        CAPTURE(T);
        CAPTURE(alpha);
        const int64_t N = 9;
        Tensor s = randn({N, classes}, {}, gen);
        Tensor t = mul(randn({N, classes}, {}, gen), scalar_like(3.0, s));  // a sharper teacher
        Tensor y = random_labels(N, classes, 5);
        Tensor sa = s.detach().requires_grad_(), sb = s.detach().requires_grad_();
        DistillationLoss fused = distillation_loss_terms(sa, t, y, {.temperature = T, .alpha = alpha});
        Tensor composed = composed_loss(sb, t, y, T, alpha);
        // The f32 composed form carries its own rounding (at 1000 classes, T = 8, 2e-6
        // off under clang's contractions), so both are held to the composed form in f64.
        const double exact = composed_loss(s.to(DType::f64), t.to(DType::f64), y, T, alpha).item<double>();
        CHECK(fused.loss.item<double>() == Approx(exact).epsilon(1e-6));
        CHECK(composed.item<double>() == Approx(exact).epsilon(1e-5));
        // the terms it reports: CE of the batch, KL batchmean without T²
        CHECK(fused.ce.item<double>() == Approx(cross_entropy(s, y).item<double>()).epsilon(1e-6));
        const Tensor inv_t = scalar_like(1.0 / T, s);
        CHECK(fused.kl.item<double>() ==
              Approx(
                  kl_div(log_softmax(mul(s, inv_t), 1), softmax(mul(t, inv_t), 1), Reduction::batchmean).item<double>())
                  .epsilon(1e-5));
        CHECK(fused.kl.item<double>() > 1e-3);  // teacher and student really differ
        fused.loss.backward();
        composed.backward();
        const std::vector<double> ga = sa.grad().to_vector<double>(), gb = sb.grad().to_vector<double>();
        const double scale = max_abs(gb);
        REQUIRE(scale > 1e-6);
        for (size_t i = 0; i < ga.size(); ++i) CHECK(std::abs(ga[i] - gb[i]) <= 1e-6 * scale + 1e-9);
      }
}

TEST_CASE("distillation_loss: batchmean, not a mean over batch × classes, and T² kept") {
  // One row, 4 classes, α = 1: the loss is T² · Σ_c p_t (log p_t − log p_s), worked by hand
  // from the softmaxes in f64 — a mean over classes would be 4× smaller, no T² 4× smaller at T = 2.
  Tensor s = from_vector<double>({1.0, 0.0, -1.0, 2.0}, {1, 4}), t = from_vector<double>({3.0, -1.0, 0.0, 0.5}, {1, 4});
  const double T = 2.0;
  double kl = 0, zs = 0, zt = 0;
  const double sv[] = {1.0, 0.0, -1.0, 2.0}, tv[] = {3.0, -1.0, 0.0, 0.5};
  for (int c = 0; c < 4; ++c) zs += std::exp(sv[c] / T), zt += std::exp(tv[c] / T);
  for (int c = 0; c < 4; ++c) {
    const double pt = std::exp(tv[c] / T) / zt, ps = std::exp(sv[c] / T) / zs;
    kl += pt * std::log(pt / ps);
  }
  Tensor y = from_vector<int64_t>({2}, {1});
  CHECK(distillation_loss(s, t, y, {.temperature = T, .alpha = 1.0}).item<double>() ==
        Approx(T * T * kl).epsilon(1e-12));
  // Two copies of the row: batchmean keeps the per-sample value.
  Tensor s2 = cat({s, s}, 0), t2 = cat({t, t}, 0), y2 = from_vector<int64_t>({2, 2}, {2});
  CHECK(distillation_loss(s2, t2, y2, {.temperature = T, .alpha = 1.0}).item<double>() ==
        Approx(T * T * kl).epsilon(1e-12));
  // α = 0 is plain cross-entropy.
  CHECK(distillation_loss(s, t, y, {.temperature = T, .alpha = 0.0}).item<double>() ==
        Approx(cross_entropy(s, y).item<double>()).epsilon(1e-12));
}

TEST_CASE("gradcheck: the fused distillation loss in f64") {
  Tensor y = from_vector<int64_t>({1, 0, 4, 2}, {4});
  Tensor teacher = leaf({4, 5}, 111, 3.0).detach();
  for (double T : {1.0, 3.0})
    for (double alpha : {0.0, 0.7, 1.0}) {
      CAPTURE(T);
      CAPTURE(alpha);
      Tensor student = leaf({4, 5}, 110);
      CHECK(gradcheck(
          [&](const std::vector<Tensor>& v) {
            return distillation_loss(v[0], teacher, y, {.temperature = T, .alpha = alpha});
          },
          {student}));
    }
  // a non-contiguous student (a transposed view)
  Tensor wide = leaf({5, 4}, 112);
  CHECK(gradcheck([&](const std::vector<Tensor>& v) { return distillation_loss(v[0].t(), teacher, y); }, {wide}));
}

TEST_CASE("distillation_loss: finite where the teacher's probabilities underflow") {
  // Teacher logits 200 apart at T = 1: e^-200 underflows in f32, so p_t = 0 for three classes.
  Tensor s = from_vector<float>({0.5f, -0.3f, 0.1f, 1.0f, 0.0f, 2.0f, -2.0f, 0.3f}, {2, 4});
  Tensor t = from_vector<float>({200.0f, 0.0f, -10.0f, 1.0f, -1e4f, 1e4f, 0.0f, 0.0f}, {2, 4});
  Tensor y = from_vector<int64_t>({0, 3}, {2});
  Tensor sa = s.detach().requires_grad_();
  DistillationLoss l = distillation_loss_terms(sa, t, y, {.temperature = 1.0, .alpha = 0.5});
  CHECK(std::isfinite(l.loss.item<double>()));
  l.loss.backward();
  for (double g : sa.grad().to_vector<double>()) CHECK(std::isfinite(g));
  // Row 0: p_t ≈ onehot(0), so KL = −log p_s(0) = log Σ e^s − 0.5.
  const double lse0 = std::log(std::exp(0.5) + std::exp(-0.3) + std::exp(0.1) + std::exp(1.0));
  // Row 1: p_t = onehot(1) (1e4 against −1e4 and 0), KL = −log p_s(1) = log Σ e^s − 2.
  const double lse1 = std::log(std::exp(0.0) + std::exp(2.0) + std::exp(-2.0) + std::exp(0.3));
  CHECK(l.kl.item<double>() == Approx(((lse0 - 0.5) + (lse1 - 2.0)) / 2).epsilon(1e-6));
}

TEST_CASE("distillation_loss: bad input is a clear error") {
  Tensor s = randn({2, 3}), t = randn({2, 3}), y = from_vector<int64_t>({0, 2}, {2});
  CHECK_THROWS_WITH(distillation_loss(s, randn({2, 4}), y),
                    doctest::Contains("teacher and student must have the same number of classes"));
  CHECK_THROWS_WITH(distillation_loss(s, t, y, {.temperature = 0.0}),
                    doctest::Contains("temperature must be > 0, got 0"));
  CHECK_THROWS_WITH(distillation_loss(s, t, y, {.alpha = 1.5}), doctest::Contains("alpha must be in [0, 1], got 1.5"));
  CHECK_THROWS_WITH(distillation_loss(s, t, from_vector<int64_t>({0, 3}, {2})),
                    doctest::Contains("target 3 (at position 1) is out of range for 3 classes"));
  CHECK_THROWS_WITH(distillation_loss(s, t, from_vector<int64_t>({0}, {1})),
                    doctest::Contains("target must be (N) = (2)"));
  Tensor live = randn({2, 3}).requires_grad_();
  CHECK_THROWS_WITH(distillation_loss(s, live, y), doctest::Contains("the teacher's logits require grad"));
  {
    NoGradGuard no_grad;  // a teacher parameter's output under no-grad is fine
    CHECK(std::isfinite(distillation_loss(s, live, y).item<double>()));
  }
}

// ---------------------------------------------------------------- minidl distill

#include "idx_files.h"
#include "temp_dir.h"
#include "tools/distill.h"

namespace {
// An untrained model saved as a checkpoint `load_model` reads back.
std::string save_model(const minidl::testing::TempDir& dir, const std::string& name, nn::ModulePtr model,
                       const std::string& arch) {
  nn::Trainer trainer(model, nn::TrainConfig{.model = arch, .epochs = 1});
  trainer.save(dir / name);
  return dir / name;
}
}  // namespace

TEST_CASE("minidl distill: each bad request is a clear error, and a good one trains both arms and saves") {
  minidl::testing::TempDir dir;
  const std::string teacher =
      save_model(dir, "teacher.safetensors", nn::build_model(nn::TrainConfig{.model = "mlp-small"}), "mlp-small");
  tools::DistillOptions o{.teachers = {teacher}, .epochs = 1, .limit_train = 64, .limit_test = 40, .json = true};
  auto fails_with = [&](tools::DistillOptions bad, const std::string& message) {
    CAPTURE(message);
    CHECK_THROWS_WITH(tools::run_distill(bad), doctest::Contains(message.c_str()));
  };
  fails_with({.teachers = {teacher}, .temperature = 0}, "--T must be > 0, got 0");
  fails_with({.teachers = {teacher}, .alpha = -0.1}, "--alpha must be in [0, 1], got -0.1");
  fails_with({.teachers = {dir / "missing.safetensors"}}, "missing.safetensors: no such file");
  minidl::testing::write_bytes(dir / "corrupt.safetensors", std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7, 8, 9});
  fails_with({.teachers = {dir / "corrupt.safetensors"}}, "corrupt.safetensors");
  fails_with({.teachers = {teacher}, .student = "mlp-huge"}, "neither a checkpoint file nor a zoo model");
  // A teacher with 12 classes for a 10-class student.
  Generator gen(1);
  auto twelve = nn::make<nn::Sequential>();
  twelve->add(nn::make<nn::Flatten>()).add(nn::make<nn::Linear>(784, 12, true, gen));
  const std::string twelve_path = save_model(dir, "twelve.safetensors", twelve, "custom");
  fails_with({.teachers = {twelve_path}}, "has 12 classes but the student mlp-small has 10");
  fails_with({.teachers = {teacher, twelve_path}}, "the teachers disagree on the number of classes");
  // Images of 16×16 for a teacher built for 28×28.
  minidl::testing::TempDir small;
  minidl::testing::write_dataset(small, "train", 20, 16);
  minidl::testing::write_dataset(small, "t10k", 20, 16);
  fails_with({.teachers = {teacher}, .data_dir = small.path.string()}, "does not take this data's 16x16 images");

  // A good request: both arms, two seeds, the student written and loadable.
  o.baseline = true;
  o.seeds = {0, 1};
  o.teachers = {teacher, teacher};  // an ensemble of two
  o.out = dir / "student.safetensors";
  CHECK(tools::run_distill(o) == 0);
  std::string arch;
  nn::ModulePtr student = nn::load_model(o.out, &arch);
  CHECK(arch == "mlp-small");
}

TEST_CASE("minidl distill --mixup: the distilled arm also matches the teacher on mixed images, reproducibly") {
  minidl::testing::TempDir dir;
  const std::string teacher =
      save_model(dir, "teacher.safetensors", nn::build_model(nn::TrainConfig{.model = "mlp-small"}), "mlp-small");
  auto student_after = [&](bool mixup, const std::string& name) {
    tools::DistillOptions o{.teachers = {teacher}, .epochs = 1, .limit_train = 96, .limit_test = 40, .json = true};
    o.mixup = mixup;
    o.out = dir / name;
    REQUIRE(tools::run_distill(o) == 0);
    return nn::load_model(o.out)->state_dict();
  };
  const auto plain = student_after(false, "plain.safetensors");
  const auto mixed = student_after(true, "mixed.safetensors");
  const auto again = student_after(true, "again.safetensors");
  REQUIRE(plain.size() == mixed.size());
  double moved = 0;
  for (const auto& entry : mixed) {
    const std::string& name = entry.first;  // a plain reference: clang cannot capture a structured binding
    CAPTURE(name);
    // The same seed gives the same pairs and weights: bit for bit the same student.
    CHECK(entry.second.to_vector<float>() == again.at(name).to_vector<float>());
    moved += sum(abs(sub(entry.second, plain.at(name)))).item();
  }
  CHECK(moved > 0);  // the extra term changed the training
}
