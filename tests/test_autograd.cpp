// tests/test_autograd.cpp — the engine's semantics: accumulation, retain_grad,
// retain_graph, NoGradGuard, detach, explicit gradients, shared subgraphs.
#include <doctest/doctest.h>

#include "minidl.h"
#include "tensor_literals.h"

using namespace minidl;
using minidl::testing::f64;

namespace {
Tensor param(std::vector<double> v, Shape shape) { return f64(v, shape).requires_grad_(true); }
}  // namespace

TEST_CASE("leaves accumulate gradients across backward calls") {
  Tensor x = param({1, 2, 3}, {3});
  Tensor y = sum(mul(x, x));  // dy/dx = 2x
  y.backward(Tensor(), /*retain_graph=*/true);
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 4, 6});
  y.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{4, 8, 12});
  CHECK(x.is_leaf());
  CHECK_FALSE(y.is_leaf());
}

TEST_CASE("a tensor used twice gets the sum of both paths") {
  // z = x·y + x  ->  dz/dx = y + 1, dz/dy = x
  Tensor x = param({2}, {}), y = param({5}, {});
  Tensor z = add(mul(x, y), x);
  z.backward();
  CHECK(x.grad().item() == 6);
  CHECK(y.grad().item() == 2);
  // a diamond: a = 2x; b = a + a; c = a · b = 4a² -> dc/dx = 16x... with x = 3: 8·a·2 = 96? check: c = 2a², dc/da = 4a = 24, da/dx = 2 -> 48
  Tensor w = param({3}, {});
  Tensor a = mul(w, 2.0);
  Tensor c = mul(a, add(a, a));
  c.backward();
  CHECK(w.grad().item() == 48);
}

TEST_CASE("backward with an explicit gradient, and its errors") {
  Tensor x = param({1, 2}, {2});
  Tensor y = mul(x, 3.0);
  CHECK_THROWS_WITH_AS(y.backward(), "backward: grad can be implicitly created only for scalar outputs, got shape [2]",
                       Error);
  y.backward(f64({1, 10}, {2}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3, 30});
  Tensor z = mul(x, 2.0);
  CHECK_THROWS_AS(z.backward(f64({1, 2, 3}, {3})), Error);
  CHECK_THROWS_WITH_AS(f64({1}, {1}).backward(), "backward: tensor does not require grad and has no grad_fn (shape [1])",
                       Error);
}

TEST_CASE("backward twice through a freed graph is a clear error") {
  Tensor x = param({1, 2}, {2});
  Tensor y = sum(exp(x));
  y.backward();
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("backward through the graph a second time"), Error);
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("retain_graph=true"), Error);
}

TEST_CASE("retain_grad keeps a non-leaf's gradient") {
  Tensor x = param({1, 2}, {2});
  Tensor h = mul(x, 3.0);
  h.retain_grad();
  Tensor other = mul(x, 5.0);  // not retained
  sum(mul(h, h) + other).backward();
  CHECK(h.grad().to_vector<double>() == std::vector<double>{6, 12});  // d(h²)/dh = 2h
  CHECK_FALSE(other.grad().defined());
  CHECK(x.grad().to_vector<double>() == std::vector<double>{23, 41});  // 2h·3 + 5
}

TEST_CASE("NoGradGuard records no graph; detach cuts history") {
  Tensor x = param({1, 2}, {2});
  {
    NoGradGuard no_grad;
    Tensor y = mul(x, 2.0);
    CHECK_FALSE(y.requires_grad());
    CHECK(y.grad_fn() == nullptr);
    CHECK_FALSE(grad_mode_enabled());
  }
  CHECK(grad_mode_enabled());
  Tensor d = mul(x, 2.0).detach();
  CHECK_FALSE(d.requires_grad());
  Tensor z = sum(mul(d, x));  // d is a constant here
  z.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 4});
}

TEST_CASE("ops on inputs that need no grad record nothing") {
  Tensor a = f64({1, 2}, {2}), b = f64({3, 4}, {2});
  Tensor c = matmul(a, b);
  CHECK_FALSE(c.requires_grad());
  CHECK(c.grad_fn() == nullptr);
  CHECK(c.item() == 11);
}

TEST_CASE("in-place ops on tracked tensors are refused unless grad mode is off") {
  Tensor w = param({1, 2}, {2});
  CHECK_THROWS_WITH_AS(w.fill_(0), doctest::Contains("a leaf tensor that requires grad"), Error);
  Tensor h = mul(w, 2.0);
  CHECK_THROWS_WITH_AS(h.zero_(), doctest::Contains("MulBackward"), Error);
  {
    NoGradGuard no_grad;  // an optimizer step
    w.copy_(sub(w, f64({0.5, 0.5}, {2})));
  }
  CHECK(w.to_vector<double>() == std::vector<double>{0.5, 1.5});
  CHECK(w.requires_grad());
}

TEST_CASE("gradients flow through views into the base") {
  Tensor x = param({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor col = x.t().select(0, 1);  // x[:, 1]
  sum(mul(col, f64({10, 100}, {2}))).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 10, 0, 0, 100, 0});
}

TEST_CASE("grad keeps the leaf's dtype through a conversion") {
  Tensor x = f64({1, 2}, {2}).requires_grad_(true);
  sum(mul(x.to(DType::f32), 3.0)).backward();
  CHECK(x.grad().dtype() == DType::f64);
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3, 3});
}

TEST_CASE("a long chain runs without recursion") {
  Tensor x = param({1}, {});
  Tensor y = x;
  for (int i = 0; i < 20000; ++i) y = add(y, 1.0);
  y.backward();
  CHECK(x.grad().item() == 1);
  CHECK(y.item() == 20001);
}

TEST_CASE("a graph far deeper than the stack allows is torn down without recursion") {
  // 400 000 nodes: a recursive teardown needs one frame chain per node and
  // overflows an 8 MB stack long before this (shown with the old destructor).
  Tensor x = param({1}, {});
  {
    Tensor y = x;
    for (int i = 0; i < 400000; ++i) y = mul(y, 1.0);
    CHECK(y.grad_fn() != nullptr);
  }  // y and the whole chain go here
  Tensor z = mul(x, 2.0);
  z.backward();
  CHECK(x.grad().item() == 2);
}

TEST_CASE("under NoGradGuard views and ops build no history, and later graphs still check what they saved") {
  Tensor w = param({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor x = f64({1, 2, 3}, {3}), z = f64({7, 8, 9}, {3});
  {
    NoGradGuard no_grad;  // inference: no closures, no detached copies, no saved versions
    for (const Tensor& v : {w.t(), w.reshape({3, 2}), w.view({6}), w.narrow(1, 1, 2), w.select(0, 1),
                            w.unsqueeze(0).expand({4, 2, 3}), w.permute({1, 0})}) {
      CHECK_FALSE(v.requires_grad());
      CHECK(v.grad_fn() == nullptr);
    }
    CHECK(w.t().to_vector<double>() == std::vector<double>{1, 4, 2, 5, 3, 6});
    Tensor y = mul(w.select(0, 0), z);  // z is captured, but nothing notes its version
    CHECK(y.grad_fn() == nullptr);
    CHECK(y.to_vector<double>() == std::vector<double>{7, 16, 27});
  }
  // z was used only without grad: changing it must not trouble a later graph.
  Tensor loss = sum(mul(w.select(0, 1), x));
  z.fill_(0);
  loss.backward();
  CHECK(w.grad().to_vector<double>() == std::vector<double>{0, 0, 0, 1, 2, 3});
  // In grad mode the saved inputs are noted again, and checked.
  Tensor loss2 = sum(mul(w.select(0, 0), x));
  x.fill_(0);
  CHECK_THROWS_WITH_AS(loss2.backward(), doctest::Contains("MulBackward saved"), Error);
  // And a gradient still reaches the base through a chain of views (t, then a
  // reshape that must copy).
  w.set_grad(Tensor());
  sum(mul(w.t().reshape({6}), f64({1, 2, 3, 4, 5, 6}, {6}))).backward();
  CHECK(w.grad().to_vector<double>() == std::vector<double>{1, 3, 5, 2, 4, 6});
}

TEST_CASE("modifying a saved tensor in place before backward is a clear error") {
  // mul saves both inputs; x needs no grad, so fill_ on it is allowed, but w's
  // gradient needs x's old values.
  Tensor x = f64({1, 2, 3}, {3});
  Tensor w = param({4, 5, 6}, {3});
  Tensor loss = sum(mul(x, w));
  x.fill_(0);
  CHECK_THROWS_WITH_AS(loss.backward(),
                       doctest::Contains("a tensor that MulBackward saved for its gradient was modified by an in-place "
                                         "operation after the forward (saved at version 0, now version 1)"),
                       Error);
  // Through a view: the storage is shared, so is the version.
  Tensor base = f64({1, 2, 3, 4}, {4});
  Tensor loss2 = sum(mul(base.narrow(0, 0, 2), w.narrow(0, 0, 2)));
  base.narrow(0, 2, 2).copy_(f64({9, 9}, {2}));
  CHECK_THROWS_AS(loss2.backward(), Error);
  // A saved output changed by an optimizer-style update under NoGradGuard.
  Tensor v = param({0.5, 1.5}, {2});
  Tensor e = exp(v);  // ExpBackward saves its output
  Tensor loss3 = sum(e);
  {
    NoGradGuard no_grad;
    e.detach().fill_(1);
  }
  CHECK_THROWS_WITH_AS(loss3.backward(), doctest::Contains("ExpBackward saved"), Error);
  // Changing a tensor nobody saved is fine, and so is changing one after backward.
  Tensor a = f64({1, 2}, {2}), b = param({3, 4}, {2});
  Tensor loss4 = sum(add(a, b));  // add saves nothing
  a.fill_(7);
  loss4.backward();
  CHECK(b.grad().to_vector<double>() == std::vector<double>{1, 1});
  Tensor loss5 = sum(mul(a, b));
  loss5.backward();
  a.fill_(0);
  CHECK(b.grad().to_vector<double>() == std::vector<double>{8, 8});
}
