// tests/test_optim.cpp — optimizer steps against values computed by hand, state
// save/restore, clipping and schedules.
#include <doctest/doctest.h>

#include <cmath>

#include "minidl.h"
#include "nn/optim.h"
#include "ops/optim.h"

using namespace minidl;
using namespace minidl::nn;
using doctest::Approx;

namespace {
Tensor param(std::vector<float> v) { return from_vector(v, {static_cast<int64_t>(v.size())}).requires_grad_(true); }
void set_grad(const Tensor& p, std::vector<float> g) { p.set_grad(from_vector(g, {static_cast<int64_t>(g.size())})); }
void check_values(const Tensor& t, std::vector<double> expected) {
  auto v = t.to_vector<float>();
  REQUIRE(v.size() == expected.size());
  for (size_t i = 0; i < v.size(); ++i) CHECK(v[i] == Approx(expected[i]).epsilon(1e-6));
}
}  // namespace

TEST_CASE("SGD: plain, weight decay, momentum, nesterov") {
  Tensor p = param({1.0f, -2.0f});
  SGD plain({p}, {.lr = 0.1});
  set_grad(p, {0.5f, 1.0f});
  plain.step();
  check_values(p, {1.0 - 0.05, -2.0 - 0.1});  // p - lr g

  Tensor q = param({1.0f});
  SGD decay({q}, {.lr = 0.1, .weight_decay = 0.5});
  set_grad(q, {0.2f});
  decay.step();
  check_values(q, {1.0 - 0.1 * (0.2 + 0.5 * 1.0)});  // g + wd p = 0.7 -> 0.93

  // momentum 0.9: step 1 buf = g = 1 -> p = 1 - 0.1 = 0.9; step 2 g = 1: buf = 0.9 + 1 = 1.9 -> p = 0.9 - 0.19 = 0.71
  Tensor r = param({1.0f});
  SGD mom({r}, {.lr = 0.1, .momentum = 0.9});
  set_grad(r, {1.0f});
  mom.step();
  check_values(r, {0.9});
  set_grad(r, {1.0f});
  mom.step();
  check_values(r, {0.71});

  // nesterov: step 1 buf = 1, update g + 0.9 buf = 1.9 -> 1 - 0.19 = 0.81;
  // step 2 buf = 1.9, update 1 + 0.9·1.9 = 2.71 -> 0.81 - 0.271 = 0.539
  Tensor s = param({1.0f});
  SGD nest({s}, {.lr = 0.1, .momentum = 0.9, .nesterov = true});
  set_grad(s, {1.0f});
  nest.step();
  check_values(s, {0.81});
  set_grad(s, {1.0f});
  nest.step();
  check_values(s, {0.539});
}

TEST_CASE("Adam and AdamW against hand-computed steps") {
  // Step 1 with g: m = 0.1 g, v = 0.001 g², m̂ = g, v̂ = g²: p -= lr · g / (|g| + eps)
  Tensor p = param({1.0f, 1.0f});
  Adam adam({p}, {.lr = 0.01});
  set_grad(p, {2.0f, -0.5f});
  adam.step();
  check_values(p, {1.0 - 0.01 * 2.0 / (2.0 + 1e-8), 1.0 + 0.01 * 0.5 / (0.5 + 1e-8)});
  // Step 2 with g = 1 on the first element (previous g 2):
  //   m = 0.9·0.2 + 0.1·1 = 0.28,  v = 0.999·0.004 + 0.001·1 = 0.004996
  //   m̂ = 0.28 / (1 - 0.81) = 1.4736842,  v̂ = 0.004996 / (1 - 0.998001) = 2.4992496
  //   p = 0.99 - 0.01 · 1.4736842 / (1.5808958 + 1e-8) = 0.99 - 0.0093218
  set_grad(p, {1.0f, 0.0f});
  adam.step();
  CHECK(p.to_vector<float>()[0] == Approx(0.99 - 0.01 * 1.4736842 / std::sqrt(2.4992496)).epsilon(1e-6));

  // Adam's weight decay is L2 in the gradient; AdamW's shrinks the weight first.
  Tensor a = param({2.0f}), w = param({2.0f});
  Adam l2({a}, {.lr = 0.1, .weight_decay = 0.5});
  AdamW decoupled({w}, {.lr = 0.1, .weight_decay = 0.5});
  set_grad(a, {1.0f});
  set_grad(w, {1.0f});
  l2.step();
  decoupled.step();
  check_values(a, {2.0 - 0.1});               // g' = 1 + 0.5·2 = 2 > 0: a normalised step of lr
  check_values(w, {2.0 * (1 - 0.05) - 0.1});  // 1.9 - 0.1
  CHECK(decoupled.name() == "adamw");
}

TEST_CASE("optimizer state round trip continues identically") {
  Tensor p1 = param({1.0f, 2.0f}), p2 = param({1.0f, 2.0f});
  AdamW o1({p1}, {.lr = 0.05}), o2({p2}, {.lr = 0.05});
  for (int i = 0; i < 3; ++i) {
    set_grad(p1, {0.3f * i + 0.1f, -0.2f});
    o1.step();
  }
  {
    NoGradGuard no_grad;
    p2.copy_(p1);
  }
  o2.load_state_dict(o1.state_dict());
  CHECK(o2.steps() == 3);
  set_grad(p1, {0.7f, 0.4f});
  set_grad(p2, {0.7f, 0.4f});
  o1.step();
  o2.step();
  CHECK(p1.to_vector<float>() == p2.to_vector<float>());
  StateDict broken = o1.state_dict();
  broken["exp_avg.0"] = zeros({3});
  CHECK_THROWS_WITH_AS(o2.load_state_dict(broken), doctest::Contains("'exp_avg.0' has shape [3] but parameter '0' has shape [2]"),
                       Error);
}

TEST_CASE("the update kernels read the step number and the rate from tensors as from the arguments") {
  // The form the GPU path uses (so a CUDA graph can replay a step): the count and
  // the learning rate in tensors. On the CPU it must give exactly what the
  // host's numbers give, with a rate that changes every step.
  Tensor a = param({0.5f, -1.0f, 2.0f}), b = param({0.5f, -1.0f, 2.0f});
  Tensor ma = zeros({3}), va = zeros({3}), mb = zeros({3}), vb = zeros({3});
  const Tensor g = from_vector(std::vector<float>{0.2f, -0.4f, 0.9f}, {3});
  for (int64_t t = 1; t <= 4; ++t) {
    NoGradGuard no_grad;
    const double lr = 0.1 / static_cast<double>(t);
    adam_step(a, g, ma, va, {.lr = lr, .step = t});
    adam_step(b, g, mb, vb, {.lr = 7.0, .step = 999}, scalar_tensor(static_cast<double>(t), {.dtype = DType::int64}),
              scalar_tensor(lr, {.dtype = DType::f64}));
  }
  CHECK(a.to_vector<float>() == b.to_vector<float>());
  // SGD: step 1 starts the momentum buffer from the gradient (dampening shows it).
  Tensor c = param({1.0f}), d = param({1.0f}), bc = zeros({1}), bd = zeros({1});
  const Tensor gc = from_vector(std::vector<float>{0.5f}, {1});
  for (int64_t t = 1; t <= 3; ++t) {
    NoGradGuard no_grad;
    const double lr = 0.1 * static_cast<double>(t);
    sgd_step(c, gc, bc, {.lr = lr, .momentum = 0.9, .dampening = 0.5, .first_step = t == 1});
    sgd_step(d, gc, bd, {.lr = 7.0, .momentum = 0.9, .dampening = 0.5},
             scalar_tensor(static_cast<double>(t), {.dtype = DType::int64}), scalar_tensor(lr, {.dtype = DType::f64}));
  }
  CHECK(c.to_vector<float>() == d.to_vector<float>());
  CHECK(bc.to_vector<float>() == bd.to_vector<float>());
  NoGradGuard no_grad;
  CHECK_THROWS_WITH_AS(adam_step(a, g, ma, va, {}, scalar_tensor(2.0)), doctest::Contains("step_count must be one int64"),
                       Error);
  CHECK_THROWS_WITH_AS(adam_step(a, g, ma, va, {}, scalar_tensor(0.0, {.dtype = DType::int64})),
                       doctest::Contains("at least 1"), Error);
  CHECK_THROWS_WITH_AS(adam_step(a, g, ma, va, {}, Tensor(), scalar_tensor(0.1)),
                       doctest::Contains("lr must be one f64"), Error);
  nn::SGD sgd(std::vector<Tensor>{a}, {.lr = 0.1});
  CHECK_THROWS_WITH_AS(sgd.set_lr(-1), doctest::Contains("learning rate must be >= 0"), Error);
  sgd.set_lr(0.05);
  CHECK(sgd.lr() == 0.05);
}

TEST_CASE("clip_grad_norm and schedules") {
  Tensor a = param({0, 0}), b = param({0});
  set_grad(a, {3, 0});
  set_grad(b, {4});  // global norm 5
  CHECK(clip_grad_norm({a, b}, 1.0) == Approx(5.0));
  CHECK(a.grad().to_vector<float>()[0] == Approx(0.6).epsilon(1e-5));
  CHECK(b.grad().to_vector<float>()[0] == Approx(0.8).epsilon(1e-5));
  CHECK(clip_grad_norm({a, b}, 10.0) == Approx(1.0).epsilon(1e-5));  // under the limit: unchanged
  CHECK(a.grad().to_vector<float>()[0] == Approx(0.6).epsilon(1e-5));
  Tensor no_grad = param({1, 2});  // parameters without gradients count for nothing
  CHECK(clip_grad_norm({no_grad}, 1.0) == 0);
  CHECK(clip_grad_norm({no_grad, a, b}, 10.0) == Approx(1.0).epsilon(1e-5));
  // A negative bound used to flip every gradient's sign (scale = max_norm / norm < 0).
  CHECK_THROWS_WITH_AS(clip_grad_norm({a, b}, -1.0), "clip_grad_norm: max_norm must be positive, got -1", Error);
  CHECK_THROWS_AS(clip_grad_norm({a, b}, std::nan("")), Error);
  CHECK(a.grad().to_vector<float>()[0] == Approx(0.6).epsilon(1e-5));  // untouched by the refusals

  StepLR step(0.1, 10, 0.5);
  CHECK(step.lr_at(9) == Approx(0.1));
  CHECK(step.lr_at(10) == Approx(0.05));
  CHECK(step.lr_at(25) == Approx(0.025));
  CosineWithWarmup cos(1.0, 10, 110, 0.0);
  CHECK(cos.lr_at(0) == Approx(0.1));   // warm-up: (step + 1) / 10
  CHECK(cos.lr_at(9) == Approx(1.0));
  CHECK(cos.lr_at(10) == Approx(1.0));  // the top of the cosine
  CHECK(cos.lr_at(60) == Approx(0.5));  // halfway down
  CHECK(cos.lr_at(110) == Approx(0.0));

  CHECK_THROWS_AS(SGD({param({1})}, {.lr = -1}), Error);
  CHECK_THROWS_AS(SGD({param({1})}, {.lr = 0.1, .nesterov = true}), Error);
}
