// tests/test_gradcheck.cpp — every differentiable op against finite differences in f64.
//
// Inputs include broadcasting, non-contiguous leaves (transposed, strided), and
// reductions with and without keepdim.
#include "gradcheck.h"

using namespace minidl;
using minidl::testing::gradcheck;
using minidl::testing::leaf;
using minidl::testing::strided_leaf;
using minidl::testing::transposed_leaf;
using V = std::vector<Tensor>;

namespace {
// |N(0,1)| + 0.5: safe for log, sqrt, pow and division.
Tensor positive_leaf(const Shape& shape, uint64_t seed) {
  return (abs(leaf(shape, seed)) + 0.5).detach().requires_grad_(true);
}
Tensor constant(const Tensor& t) { return t.detach(); }
Tensor int64s(std::vector<int64_t> v, Shape shape) { return from_vector(v, shape); }
}  // namespace

TEST_CASE("gradcheck itself catches a wrong backward") {
  // exp with a backward that is off by a factor of two in one place only
  auto bad_exp = [](const V& v) {
    Tensor y = exp(v[0]).detach();
    record(y, "BadExpBackward", {v[0]}, [y](const Tensor& g, const NeedsGrad&) {
      Tensor scale = ones_like(y);
      scale.narrow(0, 0, 1).fill_(2.0);
      return grads{mul(mul(g, y), scale)};
    });
    return y;
  };
  CHECK_FALSE(gradcheck(bad_exp, {leaf({3}, 999)}, {.report = false}));
  // and an input that received no gradient at all
  CHECK_FALSE(gradcheck([](const V& v) { return v[0] * 2.0 + v[1].detach(); }, {leaf({2}, 998), leaf({2}, 997)},
                        {.report = false}));
}

TEST_CASE("gradcheck: binary arithmetic with broadcasting") {
  Tensor a = leaf({3, 1, 4}, 1), b = leaf({2, 4}, 2), p = positive_leaf({2, 4}, 3);
  CHECK(gradcheck([](const V& v) { return add(v[0], v[1]); }, {a, b}));
  CHECK(gradcheck([](const V& v) { return sub(v[0], v[1]); }, {a, b}));
  CHECK(gradcheck([](const V& v) { return mul(v[0], v[1]); }, {a, b}));
  CHECK(gradcheck([](const V& v) { return div(v[0], v[1]); }, {a, p}));
  CHECK(gradcheck([](const V& v) { return pow(v[0], v[1]); }, {positive_leaf({3, 1, 4}, 4), b}));
  CHECK(gradcheck([](const V& v) { return maximum(v[0], v[1]); }, {a, b}));
  CHECK(gradcheck([](const V& v) { return minimum(v[0], v[1]); }, {a, b}));
  CHECK(gradcheck([](const V& v) { return xlogy(v[0], v[1]); }, {a, p}));
  CHECK(gradcheck([](const V& v) { return v[0] * 3.0 - 2.0 / v[1]; }, {a, p}));
}

TEST_CASE("gradcheck: binary ops on non-contiguous inputs") {
  Tensor t = transposed_leaf(4, 3, 5), s = strided_leaf(4, 3, 6);
  REQUIRE(!t.is_contiguous());
  REQUIRE(!s.is_contiguous());
  CHECK(gradcheck([](const V& v) { return mul(add(v[0], v[1]), v[0]); }, {t, s}));
  CHECK(gradcheck([](const V& v) { return div(v[0], add(abs(v[1]), scalar_like(1, v[1]))); }, {t, s}));
}

TEST_CASE("gradcheck: unary ops") {
  Tensor x = leaf({3, 5}, 7), p = positive_leaf({3, 5}, 8), t = transposed_leaf(3, 5, 9);
  CHECK(gradcheck([](const V& v) { return neg(v[0]); }, {x}));
  CHECK(gradcheck([](const V& v) { return exp(v[0]); }, {t}));
  CHECK(gradcheck([](const V& v) { return log(v[0]); }, {p}));
  CHECK(gradcheck([](const V& v) { return sqrt(v[0]); }, {p}));
  CHECK(gradcheck([](const V& v) { return pow(v[0], 2.5); }, {p}));
  CHECK(gradcheck([](const V& v) { return pow(v[0], 3.0); }, {x}));
  CHECK(gradcheck([](const V& v) { return abs(v[0]); }, {x}));
  CHECK(gradcheck([](const V& v) { return clamp(v[0], -0.5, 0.7); }, {x}));
  CHECK(gradcheck([](const V& v) { return relu(v[0]); }, {t}));
  CHECK(gradcheck([](const V& v) { return leaky_relu(v[0], 0.1); }, {x}));
  CHECK(gradcheck([](const V& v) { return sigmoid(v[0]); }, {x}));
  CHECK(gradcheck([](const V& v) { return tanh(v[0]); }, {t}));
  CHECK(gradcheck([](const V& v) { return gelu(v[0]); }, {x}));
}

TEST_CASE("gradcheck: where broadcasts its condition and branches") {
  Tensor a = leaf({3, 4}, 10), b = leaf({4}, 11);
  Tensor cond = constant(gt(leaf({3, 4}, 12), scalar_tensor(0.0, {.dtype = DType::f64})));
  CHECK(gradcheck([cond](const V& v) { return where(cond, v[0], v[1]); }, {a, b}));
}

TEST_CASE("gradcheck: reductions with and without keepdim") {
  Tensor x = leaf({3, 4, 5}, 13), t = transposed_leaf(4, 6, 14);
  for (bool keep : {false, true}) {
    CAPTURE(keep);
    CHECK(gradcheck([keep](const V& v) { return sum(v[0], {1}, keep); }, {x}));
    CHECK(gradcheck([keep](const V& v) { return sum(v[0], {0, 2}, keep); }, {x}));
    CHECK(gradcheck([keep](const V& v) { return mean(v[0], {-1}, keep); }, {x}));
    CHECK(gradcheck([keep](const V& v) { return var(v[0], {0, 2}, 1, keep); }, {x}));
    CHECK(gradcheck([keep](const V& v) { return var(v[0], {1}, 0, keep); }, {t}));
    CHECK(gradcheck([keep](const V& v) { return logsumexp(v[0], {2}, keep); }, {x}));
    CHECK(gradcheck([keep](const V& v) { return max(v[0], 1, keep).values; }, {x}));
    CHECK(gradcheck([keep](const V& v) { return min(v[0], 0, keep).values; }, {t}));
  }
  CHECK(gradcheck([](const V& v) { return sum(v[0]); }, {t}));
  CHECK(gradcheck([](const V& v) { return mean(v[0]); }, {x}));
  CHECK(gradcheck([](const V& v) { return var(v[0]); }, {x}));
  CHECK(gradcheck([](const V& v) { return max(v[0]); }, {x}));
  CHECK(gradcheck([](const V& v) { return min(v[0]); }, {t}));
}

TEST_CASE("gradcheck: matmul and linear") {
  CHECK(gradcheck([](const V& v) { return matmul(v[0], v[1]); }, {leaf({3, 4}, 15), leaf({4, 5}, 16)}));
  CHECK(gradcheck([](const V& v) { return matmul(v[0], v[1]); }, {transposed_leaf(3, 4, 17), strided_leaf(4, 2, 18)}));
  // batched, with broadcast batch dims: (2, 1, 3, 4) · (3, 4, 2) -> (2, 3, 3, 2)
  CHECK(gradcheck([](const V& v) { return matmul(v[0], v[1]); }, {leaf({2, 1, 3, 4}, 19), leaf({3, 4, 2}, 20)}));
  // vectors
  CHECK(gradcheck([](const V& v) { return matmul(v[0], v[1]); }, {leaf({4}, 21), leaf({4, 3}, 22)}));
  CHECK(gradcheck([](const V& v) { return matmul(v[0], v[1]); }, {leaf({2, 3, 4}, 23), leaf({4}, 24)}));
  CHECK(gradcheck([](const V& v) { return matmul(v[0], v[1]); }, {leaf({4}, 25), leaf({4}, 26)}));
  CHECK(gradcheck([](const V& v) { return linear(v[0], v[1], v[2]); }, {leaf({5, 4}, 27), leaf({3, 4}, 28), leaf({3}, 29)}));
  CHECK(gradcheck([](const V& v) { return linear(v[0], v[1]); }, {leaf({2, 5, 4}, 30), transposed_leaf(3, 4, 31)}));
  // with the fused ReLU (random data: no pre-activation sits within the finite-difference step of 0)
  CHECK(gradcheck([](const V& v) { return linear(v[0], v[1], v[2], Activation::relu); },
                  {leaf({6, 4}, 32), leaf({5, 4}, 33), leaf({5}, 34)}));
}

TEST_CASE("gradcheck: conv2d with stride, padding, dilation and groups") {
  struct Case {
    Shape x, w;
    Conv2dOptions o;
    bool bias;
  };
  const Case cases[] = {
      {{2, 3, 5, 5}, {4, 3, 3, 3}, {}, true},
      {{1, 2, 6, 5}, {3, 2, 3, 2}, {.stride = {2, 1}, .padding = {1, 0}}, true},
      {{1, 2, 7, 7}, {2, 2, 3, 3}, {.padding = {2, 2}, .dilation = {2, 2}}, false},
      {{2, 4, 5, 4}, {6, 2, 2, 2}, {.stride = {1, 2}, .padding = {1, 1}, .groups = 2}, true},
      {{1, 4, 4, 4}, {4, 1, 3, 3}, {.padding = {1, 1}, .groups = 4}, true},  // depthwise
      {{2, 3, 4, 4}, {5, 3, 1, 1}, {}, true},                                 // 1×1
  };
  uint64_t seed = 40;
  for (const Case& c : cases) {
    CAPTURE(c.x);
    CAPTURE(c.w);
    Tensor x = leaf(c.x, seed++), w = leaf(c.w, seed++);
    Tensor b = c.bias ? leaf({c.w[0]}, seed++) : Tensor();
    Conv2dOptions o = c.o;
    CHECK(gradcheck([o](const V& v) { return conv2d(v[0], v[1], v.size() > 2 ? v[2] : Tensor(), o); },
                    c.bias ? V{x, w, b} : V{x, w}));
    // and with the ReLU fused in
    CHECK(gradcheck([o](const V& v) { return conv2d(v[0], v[1], v.size() > 2 ? v[2] : Tensor(), o, Activation::relu); },
                    c.bias ? V{x, w, b} : V{x, w}));
  }
  // a non-contiguous input (permuted NHWC storage)
  Tensor nhwc = leaf({1, 5, 5, 2}, 60).detach().permute({0, 3, 1, 2}).detach().requires_grad_(true);
  REQUIRE(!nhwc.is_contiguous());
  CHECK(gradcheck([](const V& v) { return conv2d(v[0], v[1], Tensor(), {.padding = {1, 1}}); }, {nhwc, leaf({3, 2, 3, 3}, 61)}));
}

TEST_CASE("gradcheck: pooling") {
  Tensor x = leaf({2, 3, 6, 5}, 70);
  CHECK(gradcheck([](const V& v) { return max_pool2d(v[0], {2, 2}); }, {x}));
  CHECK(gradcheck([](const V& v) { return max_pool2d(v[0], {3, 3}, {2, 1}, {1, 1}); }, {x}));
  CHECK(gradcheck([](const V& v) { return avg_pool2d(v[0], {2, 2}); }, {x}));
  CHECK(gradcheck([](const V& v) { return avg_pool2d(v[0], {3, 2}, {2, 2}, {1, 1}, true); }, {x}));
  CHECK(gradcheck([](const V& v) { return avg_pool2d(v[0], {3, 2}, {2, 2}, {1, 1}, false); }, {x}));
  CHECK(gradcheck([](const V& v) { return adaptive_avg_pool2d(v[0], {4, 3}); }, {x}));
  CHECK(gradcheck([](const V& v) { return adaptive_avg_pool2d(v[0], {1, 1}); }, {leaf({3, 4, 4}, 71)}));
}

TEST_CASE("gradcheck: softmax and log_softmax over any dim") {
  Tensor x = leaf({3, 4, 5}, 80), t = transposed_leaf(4, 6, 81);
  for (int64_t d : {0, 1, -1}) {
    CAPTURE(d);
    CHECK(gradcheck([d](const V& v) { return softmax(v[0], d); }, {x}));
    CHECK(gradcheck([d](const V& v) { return log_softmax(v[0], d); }, {x}));
  }
  CHECK(gradcheck([](const V& v) { return log_softmax(v[0], 1); }, {t}));
}

TEST_CASE("gradcheck: nll_loss and cross_entropy") {
  Tensor logits = leaf({5, 4}, 90);
  Tensor target = int64s({0, 3, 1, 1, 2}, {5});
  Tensor w = from_vector<double>({0.5, 2.0, 1.0, 1.5}, {4});
  for (Reduction r : {Reduction::none, Reduction::mean, Reduction::sum}) {
    CAPTURE(static_cast<int>(r));
    CHECK(gradcheck([&](const V& v) { return nll_loss(log_softmax(v[0], 1), target, {.reduction = r}); }, {logits}));
    CHECK(gradcheck([&](const V& v) { return cross_entropy(v[0], target, {.weight = w, .reduction = r}); }, {logits}));
    CHECK(gradcheck([&](const V& v) {
      return cross_entropy(v[0], target, {.weight = w, .reduction = r, .label_smoothing = 0.2});
    }, {logits}));
  }
  Tensor ignored = int64s({0, -100, 1, 1, -100}, {5});
  CHECK(gradcheck([&](const V& v) { return cross_entropy(v[0], ignored, {.label_smoothing = 0.1}); }, {logits}));
  // (N, C, L) logits, as for per-position classification
  Tensor seq = leaf({2, 3, 4}, 91);
  Tensor seq_target = int64s({0, 2, 1, 1, 2, 2, 0, 1}, {2, 4});
  CHECK(gradcheck([&](const V& v) { return cross_entropy(v[0], seq_target); }, {seq}));
  CHECK(gradcheck([&](const V& v) { return cross_entropy(v[0], target); }, {transposed_leaf(5, 4, 92)}));
}

TEST_CASE("gradcheck: kl_div in both target modes, and mse_loss") {
  Tensor s = leaf({3, 4}, 100), t = leaf({3, 4}, 101);
  for (Reduction r : {Reduction::none, Reduction::mean, Reduction::sum, Reduction::batchmean}) {
    CAPTURE(static_cast<int>(r));
    // input log-probs from s; target probabilities (or log-probs) from t, both differentiable.
    CHECK(gradcheck([r](const V& v) { return kl_div(log_softmax(v[0], 1), softmax(v[1], 1), r); }, {s, t}));
    CHECK(gradcheck([r](const V& v) { return kl_div(log_softmax(v[0], 1), log_softmax(v[1], 1), r, true); }, {s, t}));
  }
  for (Reduction r : {Reduction::none, Reduction::mean, Reduction::sum, Reduction::batchmean})
    for (double T : {1.0, 2.5}) {
      CAPTURE(T);
      // the fused distillation KL, gradients into the student and the teacher
      CHECK(gradcheck([r, T](const V& v) { return kl_div_logits(v[0], v[1], T, r); }, {s, t}));
    }
  CHECK(gradcheck([](const V& v) { return kl_div_logits(v[0], v[1].t(), 2.0); }, {s, transposed_leaf(4, 3, 103)}));
  CHECK(gradcheck([](const V& v) { return mse_loss(v[0], v[1]); }, {s, t}));
  CHECK(gradcheck([](const V& v) { return mse_loss(v[0], v[1], Reduction::none); }, {s, transposed_leaf(3, 4, 102)}));
}

TEST_CASE("gradcheck: the distillation loss") {
  // α·KL(log_softmax(s/T) ‖ softmax(t/T))·T² + (1−α)·CE(s, y), teacher fixed.
  const double T = 3.0, alpha = 0.7;
  Tensor student = leaf({4, 5}, 110);
  Tensor teacher = leaf({4, 5}, 111).detach();
  Tensor y = int64s({1, 0, 4, 2}, {4});
  CHECK(gradcheck([&](const V& v) {
    Tensor kl = kl_div(log_softmax(v[0] / T, 1), softmax(teacher / T, 1), Reduction::batchmean);
    return kl * (alpha * T * T) + cross_entropy(v[0], y) * (1 - alpha);
  }, {student}));
}

TEST_CASE("gradcheck: dropout with a fixed mask") {
  Tensor x = leaf({4, 6}, 120);
  CHECK(gradcheck([](const V& v) {
    Generator gen(7);  // the same mask on every evaluation
    return dropout(v[0], 0.3, true, gen);
  }, {x}));
}

TEST_CASE("gradcheck: batch_norm in training and eval") {
  Tensor x = leaf({4, 3, 2, 2}, 130), w = leaf({3}, 131), b = leaf({3}, 132);
  CHECK(gradcheck([](const V& v) {
    Tensor rm = zeros({3}, {.dtype = DType::f64}), rv = ones({3}, {.dtype = DType::f64});
    return batch_norm(v[0], rm, rv, v[1], v[2], true);
  }, {x, w, b}));
  CHECK(gradcheck([](const V& v) { return batch_norm(v[0], Tensor(), Tensor(), v[1], v[2], true); },
                  {leaf({6, 3}, 133), w, b}));
  Tensor rm = from_vector<double>({0.1, -0.2, 0.3}, {3}), rv = from_vector<double>({1.5, 0.5, 2.0}, {3});
  CHECK(gradcheck([&](const V& v) { return batch_norm(v[0], rm, rv, v[1], v[2], false); }, {x, w, b}));
}

TEST_CASE("gradcheck: cat, stack, index_select, gather, scatter_add") {
  Tensor a = leaf({2, 3}, 140), b = leaf({4, 3}, 141), c = transposed_leaf(2, 3, 142);
  CHECK(gradcheck([](const V& v) { return cat({v[0], v[1], v[2]}, 0); }, {a, b, c}));
  CHECK(gradcheck([](const V& v) { return cat({v[0], v[1]}, 1); }, {a, c}));
  CHECK(gradcheck([](const V& v) { return stack({v[0], v[1]}, 1); }, {a, c}));
  Tensor idx = int64s({2, 0, 2, 1}, {4});
  CHECK(gradcheck([idx](const V& v) { return index_select(v[0], 1, idx); }, {a}));
  CHECK(gradcheck([idx](const V& v) { return index_select(v[0], 0, idx); }, {b}));
  Tensor gidx = int64s({0, 2, 2, 1, 0, 0}, {2, 3});
  CHECK(gradcheck([gidx](const V& v) { return gather(v[0], 1, gidx); }, {a}));
  CHECK(gradcheck([gidx](const V& v) { return gather(v[0], 0, gidx); }, {b}));
  CHECK(gradcheck([gidx](const V& v) { return scatter_add(v[0], 1, gidx, v[1]); }, {leaf({2, 4}, 143), a}));
}

TEST_CASE("gradcheck: views") {
  Tensor x = leaf({2, 3, 4}, 150);
  CHECK(gradcheck([](const V& v) { return v[0].reshape({4, 6}); }, {x}));
  CHECK(gradcheck([](const V& v) { return v[0].transpose(0, 2).reshape({-1}); }, {x}));
  CHECK(gradcheck([](const V& v) { return v[0].permute({2, 0, 1}); }, {x}));
  CHECK(gradcheck([](const V& v) { return v[0].narrow(2, 1, 2); }, {x}));
  CHECK(gradcheck([](const V& v) { return v[0].slice(2, 0, 4, 3); }, {x}));
  CHECK(gradcheck([](const V& v) { return v[0].select(1, -1); }, {x}));
  CHECK(gradcheck([](const V& v) { return v[0].unsqueeze(1).expand({2, 5, 3, 4}); }, {x}));
  CHECK(gradcheck([](const V& v) { return v[0].narrow(1, 0, 1).squeeze(1); }, {x}));
  CHECK(gradcheck([](const V& v) { return v[0].flatten(1); }, {x}));
  CHECK(gradcheck([](const V& v) { return v[0].clone().t(); }, {transposed_leaf(3, 2, 151)}));
  CHECK(gradcheck([](const V& v) { return v[0].to(DType::f32).to(DType::f64); }, {x},
                  {.eps = 1e-3, .atol = 1e-4, .rtol = 1e-3}));
}
