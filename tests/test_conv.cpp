// tests/test_conv.cpp — the im2col + GEMM convolution against a direct seven-loop
// convolution computed here in f64, forward and all three gradients, at shapes
// large enough that samples are split into several GEMM batches with a remainder
// (N = 11 on two threads), with groups, stride, padding, dilation, and the 1×1 path;
// and the forward a compiled plan runs: with a max pool in its pass (bit for bit
// against the ops one after another) and with a bf16 weight.
#include <doctest/doctest.h>

#include <cmath>

#include "minidl.h"
#include "ops/cpu/kernels.h"

using namespace minidl;

namespace {

struct Case {
  int64_t N, C, H, W, O, kh, kw;
  Conv2dOptions o;
};

struct Direct {
  std::vector<double> y, gx, gw, gb;
};

// y = conv(x, w) + b, and for the upstream gradient gy: gx, gw, gb, each by the
// definition: every (n, o, oh, ow, c, i, j) term of the sum visited once.
Direct direct(const Case& c, const std::vector<double>& x, const std::vector<double>& w,
              const std::vector<double>& b, const std::vector<double>& gy, int64_t Ho, int64_t Wo) {
  const int64_t G = c.o.groups, Cg = c.C / G, Og = c.O / G;
  Direct d{std::vector<double>(c.N * c.O * Ho * Wo), std::vector<double>(x.size()), std::vector<double>(w.size()),
           std::vector<double>(c.O)};
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t o = 0; o < c.O; ++o)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          const int64_t yi = ((n * c.O + o) * Ho + oh) * Wo + ow;
          double acc = b[o];
          d.gb[o] += gy[yi];
          for (int64_t ci = 0; ci < Cg; ++ci)
            for (int64_t i = 0; i < c.kh; ++i)
              for (int64_t j = 0; j < c.kw; ++j) {
                const int64_t h = oh * c.o.stride[0] - c.o.padding[0] + i * c.o.dilation[0];
                const int64_t v = ow * c.o.stride[1] - c.o.padding[1] + j * c.o.dilation[1];
                if (h < 0 || h >= c.H || v < 0 || v >= c.W) continue;
                const int64_t xi = ((n * c.C + (o / Og) * Cg + ci) * c.H + h) * c.W + v;
                const int64_t wi = ((o * Cg + ci) * c.kh + i) * c.kw + j;
                acc += x[xi] * w[wi];
                d.gx[xi] += gy[yi] * w[wi];
                d.gw[wi] += gy[yi] * x[xi];
              }
          d.y[yi] = acc;
        }
  return d;
}

void check_close(const Tensor& got, const std::vector<double>& want, double tol, const char* what) {
  std::vector<double> g = got.to_vector<double>();
  REQUIRE(g.size() == want.size());
  double worst = 0, scale = 1e-3;
  for (size_t i = 0; i < g.size(); ++i) {
    const double e = std::abs(g[i] - want[i]);
    if (!(e <= worst)) worst = e;  // a NaN (an element never written) stays, and fails
    scale = std::max(scale, std::abs(want[i]));
  }
  INFO(what, ": worst error ", worst, " at scale ", scale);
  CHECK(worst <= tol * scale);
}

}  // namespace

TEST_CASE("conv2d forward and backward match a direct convolution") {
  const Case cases[] = {
      {11, 8, 30, 30, 16, 3, 3, {.padding = {1, 1}}},                          // several batches, a remainder
      {11, 6, 17, 13, 4, 3, 2, {.stride = {2, 3}, .padding = {1, 0}, .dilation = {1, 2}}},
      {5, 6, 12, 12, 9, 3, 3, {.padding = {2, 2}, .dilation = {2, 2}, .groups = 3}},
      {7, 12, 9, 9, 8, 1, 1, {}},                                              // 1×1: the no-im2col path
      {7, 12, 9, 9, 8, 1, 1, {.groups = 4}},                                   // 1×1 grouped
      {3, 4, 9, 9, 6, 1, 1, {.stride = {2, 2}}},                               // 1×1 strided: im2col again
      {1, 3, 28, 28, 5, 5, 5, {.padding = {2, 2}}},                            // batch 1: GEMM parallel inside
      {4, 5, 8, 6, 7, 3, 1, {.padding = {1, 0}}},                              // "same", no column shift
      {2, 3, 3, 4, 4, 5, 5, {.padding = {2, 2}}},                              // kernel larger than the image
  };
  Generator gen(11);
  for (const DType dt : {DType::f32, DType::f64}) {
    for (const Case& c : cases) {
      INFO("N ", c.N, " C ", c.C, " k ", c.kh, "x", c.kw, " groups ", c.o.groups, " stride ", c.o.stride[0], " ", dtype_name(dt));
      Tensor x = randn({c.N, c.C, c.H, c.W}, {.dtype = dt}, gen).requires_grad_();
      Tensor w = randn({c.O, c.C / c.o.groups, c.kh, c.kw}, {.dtype = dt}, gen).requires_grad_();
      Tensor b = randn({c.O}, {.dtype = dt}, gen).requires_grad_();
      Tensor y = conv2d(x, w, b, c.o);
      Tensor gy = randn(y.shape(), {.dtype = dt}, gen);
      sum(mul(y, gy)).backward();
      Direct d = direct(c, x.to_vector<double>(), w.to_vector<double>(), b.to_vector<double>(), gy.to_vector<double>(),
                        y.size(2), y.size(3));
      const double tol = dt == DType::f32 ? 2e-5 : 1e-12;
      check_close(y, d.y, tol, "y");
      check_close(x.grad(), d.gx, tol, "gx");
      check_close(w.grad(), d.gw, tol, "gw");
      check_close(b.grad(), d.gb, tol, "gb");
    }
  }
}

TEST_CASE("conv2d: a frozen weight still gives the bias its gradient, and the reverse") {
  Generator gen(12);
  Tensor x = randn({4, 3, 8, 8}, {}, gen);
  Tensor w = randn({5, 3, 3, 3}, {}, gen);
  Tensor b = randn({5}, {}, gen).requires_grad_();
  sum(conv2d(x, w, b)).backward();
  // d/db Σ y = number of output positions per channel: N·Ho·Wo = 4·6·6
  std::vector<float> gb = b.grad().to_vector<float>();
  for (float v : gb) CHECK(v == doctest::Approx(144));
  // d/dw[o][c][i][j] Σ y = Σ over samples and output positions of x[n][c][oh + i][ow + j]:
  // the same for every o, computed here directly.
  Tensor w2 = randn({5, 3, 3, 3}, {}, gen).requires_grad_();
  sum(conv2d(x, w2, randn({5}, {}, gen))).backward();
  REQUIRE(w2.grad().defined());
  std::vector<float> xv = x.to_vector<float>(), gw = w2.grad().to_vector<float>();
  for (int o = 0; o < 5; ++o)
    for (int c = 0; c < 3; ++c)
      for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) {
          double want = 0;
          for (int n = 0; n < 4; ++n)
            for (int oh = 0; oh < 6; ++oh)
              for (int ow = 0; ow < 6; ++ow) want += xv[((n * 3 + c) * 8 + oh + i) * 8 + ow + j];
          CHECK(gw[((o * 3 + c) * 3 + i) * 3 + j] == doctest::Approx(want).epsilon(1e-5));
        }
}

TEST_CASE("conv2d with a fused ReLU: every subset of wanted gradients matches relu(conv2d) composed") {
  // The fused backward masks gy by the output inside the kernel and computes only
  // the gradients asked for; each subset takes a different path through it.
  Generator gen(13);
  for (const bool pointwise : {false, true}) {
    const int64_t k = pointwise ? 1 : 3;
    const Conv2dOptions o{.padding = {pointwise ? 0 : 1, pointwise ? 0 : 1}};
    Tensor x0 = randn({5, 4, 7, 7}, {.dtype = DType::f64}, gen);
    Tensor w0 = randn({6, 4, k, k}, {.dtype = DType::f64}, gen), b0 = randn({6}, {.dtype = DType::f64}, gen);
    Tensor gy = randn({5, 6, 7, 7}, {.dtype = DType::f64}, gen);
    for (int wanted = 1; wanted < 8; ++wanted) {
      INFO("pointwise ", pointwise, " wanted x ", (wanted & 1) != 0, " w ", (wanted & 2) != 0, " b ", (wanted & 4) != 0);
      Tensor x = x0.detach().requires_grad_((wanted & 1) != 0), xr = x0.detach().requires_grad_((wanted & 1) != 0);
      Tensor w = w0.detach().requires_grad_((wanted & 2) != 0), wr = w0.detach().requires_grad_((wanted & 2) != 0);
      Tensor b = b0.detach().requires_grad_((wanted & 4) != 0), br = b0.detach().requires_grad_((wanted & 4) != 0);
      Tensor y = conv2d(x, w, b, o, Activation::relu);
      Tensor yr = relu(conv2d(xr, wr, br, o));
      check_close(y, yr.to_vector<double>(), 1e-12, "y");
      sum(mul(y, gy)).backward();
      sum(mul(yr, gy)).backward();
      for (auto [got, want, name] : {std::tuple{x, xr, "gx"}, std::tuple{w, wr, "gw"}, std::tuple{b, br, "gb"}}) {
        REQUIRE(got.grad().defined() == want.grad().defined());
        if (want.grad().defined()) check_close(got.grad(), want.grad().to_vector<double>(), 1e-12, name);
      }
    }
  }
}

TEST_CASE("conv2d on an empty batch: an empty output, zero weight and bias gradients") {
  Generator gen(14);
  for (const int64_t k : {3, 1}) {  // the im2col path and the 1×1 path
    Tensor x = randn({0, 3, 8, 8}, {}, gen).requires_grad_();
    Tensor w = randn({4, 3, k, k}, {}, gen).requires_grad_();
    Tensor b = randn({4}, {}, gen).requires_grad_();
    Tensor y = conv2d(x, w, b, {.padding = {k / 2, k / 2}}, Activation::relu);
    CHECK(y.shape() == Shape{0, 4, 8, 8});
    sum(y).backward();
    CHECK(x.grad().shape() == Shape{0, 3, 8, 8});
    for (float v : w.grad().to_vector<float>()) CHECK(v == 0.0f);
    for (float v : b.grad().to_vector<float>()) CHECK(v == 0.0f);
  }
}

TEST_CASE("conv2d: 60 random geometries against the direct convolution, with and without the fused ReLU") {
  // Random sizes, kernels, strides, paddings (up to the kernel's reach), dilations
  // and groups, in f64: every path (shifted im2col, row im2col, 1×1, batched
  // backward, serial and parallel batches) meets shapes nobody chose by hand.
  Generator gen(15);
  auto pick = [&](int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(gen.uniform() * (hi - lo + 1)) % (hi - lo + 1); };
  for (int trial = 0; trial < 60; ++trial) {
    const int64_t G = pick(1, 3);
    Case c{pick(1, 9), G * pick(1, 3), pick(1, 12), pick(1, 12), G * pick(1, 3), pick(1, 4), pick(1, 4), {}};
    c.o.groups = G;
    c.o.stride = {pick(1, 3), pick(1, 3)};
    c.o.dilation = {pick(1, 2), pick(1, 2)};
    c.o.padding = {pick(0, c.kh / 2 * c.o.dilation[0]), pick(0, c.kw / 2 * c.o.dilation[1])};
    const int64_t eff_h = c.o.dilation[0] * (c.kh - 1) + 1, eff_w = c.o.dilation[1] * (c.kw - 1) + 1;
    if (c.H + 2 * c.o.padding[0] < eff_h || c.W + 2 * c.o.padding[1] < eff_w) continue;  // kernel does not fit
    const bool relu_fused = trial % 2 == 1;
    INFO("trial ", trial, ": N ", c.N, " C ", c.C, " ", c.H, "x", c.W, " O ", c.O, " k ", c.kh, "x", c.kw, " stride ",
         c.o.stride[0], ",", c.o.stride[1], " pad ", c.o.padding[0], ",", c.o.padding[1], " dil ", c.o.dilation[0], ",",
         c.o.dilation[1], " groups ", G, " relu ", relu_fused);
    Tensor x = randn({c.N, c.C, c.H, c.W}, {.dtype = DType::f64}, gen).requires_grad_();
    Tensor w = randn({c.O, c.C / G, c.kh, c.kw}, {.dtype = DType::f64}, gen).requires_grad_();
    Tensor b = randn({c.O}, {.dtype = DType::f64}, gen).requires_grad_();
    Tensor y = conv2d(x, w, b, c.o, relu_fused ? Activation::relu : Activation::none);
    Tensor gy = randn(y.shape(), {.dtype = DType::f64}, gen);
    sum(mul(y, gy)).backward();
    // Through a ReLU the upstream gradient is masked where the (direct) output is ≤ 0.
    std::vector<double> gyv = gy.to_vector<double>();
    Direct d0 = direct(c, x.to_vector<double>(), w.to_vector<double>(), b.to_vector<double>(), gyv, y.size(2), y.size(3));
    if (relu_fused) {
      for (size_t i = 0; i < gyv.size(); ++i) gyv[i] = d0.y[i] > 0 ? gyv[i] : 0.0;
      for (double& v : d0.y) v = std::max(v, 0.0);
    }
    Direct d = relu_fused ? direct(c, x.to_vector<double>(), w.to_vector<double>(), b.to_vector<double>(), gyv,
                                   y.size(2), y.size(3))
                          : d0;
    check_close(y, d0.y, 1e-12, "y");
    check_close(x.grad(), d.gx, 1e-12, "gx");
    check_close(w.grad(), d.gw, 1e-12, "gw");
    check_close(b.grad(), d.gb, 1e-12, "gb");
  }
}

TEST_CASE("conv2d_forward with a max pool (the compiled plan's conv+relu+pool) equals the ops one after another") {
  // Bit for bit: the same GEMMs, the same bias and ReLU, the same pooling
  // kernels, only run on each plane while it is in the workspace. Fixed cases
  // reach the 2×2 AVX-512 pooling (f32, even width) in serial and parallel
  // batches, the 1×1 conv (which then takes the im2col path) and padding in the
  // pool; random ones the rest.
  struct Pooled {
    Case c;
    int64_t pk, ps, pp;  // the pool's kernel, stride, padding
    DType dtype;
    bool relu;
  };
  std::vector<Pooled> cases = {
      {{11, 3, 28, 28, 8, 3, 3, {.padding = {1, 1}}}, 2, 2, 0, DType::f32, true},  // the zoo cnn's conv1, parallel
      {{1, 4, 14, 14, 6, 3, 3, {.padding = {1, 1}}}, 2, 2, 0, DType::f32, true},   // batch 1: the GEMM parallel inside
      {{3, 4, 9, 10, 5, 3, 3, {}}, 2, 2, 0, DType::f32, false},                    // odd rows: the last is not read
      {{5, 6, 7, 7, 4, 1, 1, {}}, 2, 2, 0, DType::f32, true},                      // 1×1, odd width: the gather kernel
      {{4, 4, 12, 12, 6, 3, 3, {.stride = {2, 1}, .groups = 2}}, 3, 2, 1, DType::f32, true},  // padding: clipped
      {{3, 2, 10, 10, 3, 3, 3, {.padding = {1, 1}}}, 2, 2, 0, DType::f64, true},
  };
  Generator gen(16);
  auto pick = [&](int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(gen.uniform() * (hi - lo + 1)) % (hi - lo + 1);
  };
  for (int trial = 0; trial < 40; ++trial) {
    Case c{pick(1, 7), pick(1, 4), pick(2, 13), pick(2, 13), pick(1, 5), pick(1, 3), pick(1, 3), {}};
    c.o.stride = {pick(1, 2), pick(1, 2)};
    c.o.padding = {pick(0, c.kh / 2), pick(0, c.kw / 2)};
    const int64_t k = pick(1, 3);
    cases.push_back({c, k, pick(1, 3), pick(0, k / 2), trial % 2 ? DType::f64 : DType::f32, trial % 3 != 0});
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const Pooled& t = cases[i];
    const Case& c = t.c;
    INFO("case ", i, ": N ", c.N, " C ", c.C, " ", c.H, "x", c.W, " O ", c.O, " k ", c.kh, "x", c.kw, " pool ", t.pk,
         " stride ", t.ps, " pad ", t.pp, " ", t.dtype, " relu ", t.relu);
    const int64_t G = c.o.groups;
    const Tensor x = randn({c.N, c.C, c.H, c.W}, {.dtype = t.dtype}, gen);
    const Tensor w = randn({c.O, c.C / G, c.kh, c.kw}, {.dtype = t.dtype}, gen);
    const Tensor b = randn({c.O}, {.dtype = t.dtype}, gen);
    const Tensor conv = conv2d(x, w, b, c.o, t.relu ? Activation::relu : Activation::none);
    if (conv.size(2) + 2 * t.pp < t.pk || conv.size(3) + 2 * t.pp < t.pk) continue;  // the pool does not fit
    const Tensor want = max_pool2d(conv, {t.pk, t.pk}, {t.ps, t.ps}, {t.pp, t.pp});
    const Tensor got = full(want.shape(), std::nan(""), {.dtype = t.dtype});  // poisoned: every element is written
    const Conv2dParams p{c.o.stride[0], c.o.stride[1], c.o.padding[0], c.o.padding[1], 1, 1, G, t.relu};
    const Pool2dParams pool{t.pk, t.pk, t.ps, t.ps, t.pp, t.pp};
    cpu::conv2d_forward(got.arg(), x.arg(), w.arg(), b.arg(), p, &pool);
    CHECK(got.to_vector<double>() == want.to_vector<double>());
  }
  // An output that is not the pooled convolution's size is refused, not overrun.
  const Tensor x = randn({1, 1, 8, 8}, {}, gen), w = randn({2, 1, 3, 3}, {}, gen), b = randn({2}, {}, gen);
  const Tensor y = empty({1, 2, 4, 4});  // the 6x6 convolution pooled 2x2 is 3x3
  const Pool2dParams pool{2, 2, 2, 2, 0, 0};
  CHECK_THROWS_WITH_AS(cpu::conv2d_forward(y.arg(), x.arg(), w.arg(), b.arg(), {1, 1, 0, 0, 1, 1, 1, false}, &pool),
                       doctest::Contains("not the 6x6 convolution pooled by a 2x2 window"), Error);
  // And a window no pooling could use, before anything divides by its stride.
  const Pool2dParams zero_stride{2, 2, 0, 2, 0, 0};
  CHECK_THROWS_WITH_AS(
      cpu::conv2d_forward(y.arg(), x.arg(), w.arg(), b.arg(), {1, 1, 0, 0, 1, 1, 1, false}, &zero_stride),
      doctest::Contains("pool window 2x2, stride 0x2"), Error);
}

TEST_CASE("conv2d_forward with a bf16 weight (a bf16 plan's conv) against the f64 conv of the rounded values") {
  // The bf16 GEMM multiplies bf16 values exactly and sums in f32, so the result
  // is the f64 convolution of x rounded to bf16 and of the weight, to f32
  // rounding: the im2col columns, their packing and the copy-out are checked,
  // with groups, the 1×1 conv, a stride, a pool, and serial and parallel batches.
  struct Bf16Case {
    Case c;
    bool relu, pool;
  };
  const Bf16Case cases[] = {
      {{11, 3, 28, 28, 8, 3, 3, {.padding = {1, 1}}}, true, true},
      {{1, 32, 14, 14, 64, 3, 3, {.padding = {1, 1}}}, true, true},
      {{4, 6, 9, 11, 4, 3, 3, {.stride = {2, 1}, .groups = 2}}, false, false},
      {{3, 5, 7, 7, 6, 1, 1, {}}, true, false},
  };
  Generator gen(17);
  for (const Bf16Case& t : cases) {
    // (Not a structured binding: clang cannot capture one in INFO's lambda.)
    const Case& c = t.c;
    const bool relu = t.relu, pooled = t.pool;
    INFO("N ", c.N, " C ", c.C, " ", c.H, "x", c.W, " O ", c.O, " k ", c.kh, " relu ", relu, " pool ", pooled);
    const int64_t G = c.o.groups;
    const Tensor x = randn({c.N, c.C, c.H, c.W}, {}, gen);
    const Tensor w = randn({c.O, c.C / G, c.kh, c.kw}, {}, gen).to(DType::bf16);
    const Tensor b = randn({c.O}, {}, gen);
    const Tensor x64 = x.to(DType::bf16).to(DType::f64);
    Tensor want = conv2d(x64, w.to(DType::f64), b.to(DType::f64), c.o, relu ? Activation::relu : Activation::none);
    if (pooled) want = max_pool2d(want, {2, 2});
    const Tensor got = full(want.shape(), std::nan(""));
    const Conv2dParams p{c.o.stride[0], c.o.stride[1], c.o.padding[0], c.o.padding[1], 1, 1, G, relu};
    const Pool2dParams pool{2, 2, 2, 2, 0, 0};
    cpu::conv2d_forward(got.arg(), x.arg(), w.arg(), b.arg(), p, pooled ? &pool : nullptr);
    check_close(got, want.to_vector<double>(), 1e-5, "y");
  }
}

TEST_CASE("conv2d_direct (a first layer written channels last) against conv2d, pooled or not") {
  // Fixed cases: the zoo stems (one channel, 3x3 "same", 32 outputs), three
  // channels, channel counts that end in a partial vector (10) and span two
  // passes of 64 (80), stride, dilation, a 2x3 kernel, no bias; random ones the
  // rest. Every case: the AVX-512 tiles (where this CPU has them) and the
  // reference bit for bit, both within rounding of the f32 conv2d, pooled
  // outputs as max_pool2d of it.
  struct Direct {
    Case c;
    bool relu, bias;
    int64_t pk, ps, pp;  // a max pool after it (pk = 0: none)
  };
  std::vector<Direct> cases = {
      {{32, 1, 28, 28, 32, 3, 3, {.padding = {1, 1}}}, true, true, 0, 0, 0},  // resnet-s's stem
      {{5, 1, 28, 28, 32, 3, 3, {.padding = {1, 1}}}, true, true, 2, 2, 0},   // the cnn's conv1 and its pool
      {{1, 1, 28, 28, 32, 3, 3, {.padding = {1, 1}}}, true, true, 0, 0, 0},   // batch 1
      {{3, 3, 11, 13, 10, 3, 3, {.stride = {2, 2}, .padding = {1, 1}}}, false, true, 0, 0, 0},
      {{2, 2, 9, 9, 80, 3, 3, {.padding = {2, 2}, .dilation = {2, 2}}}, true, false, 0, 0, 0},
      {{4, 1, 7, 9, 17, 2, 3, {.padding = {0, 1}}}, true, true, 3, 2, 1},
  };
  Generator gen(17);
  auto pick = [&](int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(gen.uniform() * (hi - lo + 1)) % (hi - lo + 1);
  };
  for (int trial = 0; trial < 30; ++trial) {
    Case c{pick(1, 6), pick(1, 3), pick(3, 15), pick(3, 15), pick(1, 70), pick(1, 3), pick(1, 3), {}};
    c.o.stride = {pick(1, 2), pick(1, 2)};
    c.o.padding = {pick(0, c.kh / 2), pick(0, c.kw / 2)};
    cases.push_back({c, trial % 2 == 0, trial % 3 != 0, trial % 4 == 0 ? int64_t{2} : 0, 2, 0});
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    const Direct& t = cases[i];
    const Case& c = t.c;
    INFO("case ", i, ": N ", c.N, " C ", c.C, " ", c.H, "x", c.W, " O ", c.O, " k ", c.kh, "x", c.kw, " relu ", t.relu,
         " bias ", t.bias, " pool ", t.pk);
    const Tensor x = randn({c.N, c.C, c.H, c.W}, {}, gen), w = randn({c.O, c.C, c.kh, c.kw}, {}, gen);
    const Tensor b = t.bias ? randn({c.O}, {}, gen) : Tensor();
    Tensor want = conv2d(x, w, b, c.o, t.relu ? Activation::relu : Activation::none);
    if (t.pk > 0) {
      if (want.size(2) < t.pk || want.size(3) < t.pk) continue;  // the pool does not fit
      want = max_pool2d(want, {t.pk, t.pk}, {t.ps, t.ps}, {t.pp, t.pp});
    }
    const Pool2dParams pool{t.pk, t.pk, t.ps, t.ps, t.pp, t.pp};
    cpu::DirectConvArgs a;
    a.x = x.data_ptr<float>(), a.N = c.N, a.C = c.C, a.H = c.H, a.W = c.W;
    a.O = c.O, a.kernel_h = c.kh, a.kernel_w = c.kw;
    a.params = {c.o.stride[0], c.o.stride[1], c.o.padding[0], c.o.padding[1], c.o.dilation[0], c.o.dilation[1], 1,
                t.relu};
    a.w = w.data_ptr<float>(), a.bias = t.bias ? b.data_ptr<float>() : nullptr;
    a.max_pool = t.pk > 0 ? &pool : nullptr;
    a.Hy = want.size(2), a.Wy = want.size(3);
    std::vector<std::vector<float>> results;
    for (int variant = 0; variant < 4; ++variant) {
      const bool reference = variant & 1, channels_first = variant & 2;
      CAPTURE(reference);
      CAPTURE(channels_first);
      // poisoned: every element is written
      const Tensor got = channels_first ? full_like(want, std::nan("")) : full({c.N, a.Hy, a.Wy, c.O}, std::nan(""));
      a.y = got.data_ptr<float>(), a.y_channels_first = channels_first;
      cpu::conv2d_direct(a, reference);
      const Tensor first = channels_first ? got : got.permute({0, 3, 1, 2});  // (N, O, Hy, Wy)
      const auto g = first.to_vector<float>(), e = want.to_vector<float>();
      double worst = 0, peak = 0;
      for (size_t j = 0; j < e.size(); ++j) {
        worst = std::isnan(g[j]) ? INFINITY : std::max(worst, double{std::abs(g[j] - e[j])});
        peak = std::max(peak, double{std::abs(e[j])});
      }
      CHECK(worst <= 1e-5 * peak);
      results.push_back(g);
    }
    for (size_t v = 1; v < results.size(); ++v) CHECK(results[v] == results[0]);
  }
  // Refused, not overrun: an output of the wrong size, and grouped weights.
  const Tensor x = randn({1, 1, 8, 8}, {}, gen), w = randn({2, 1, 3, 3}, {}, gen);
  Tensor y = empty({1, 5, 5, 2});
  cpu::DirectConvArgs a;
  a.x = x.data_ptr<float>(), a.N = 1, a.C = 1, a.H = 8, a.W = 8, a.O = 2, a.kernel_h = 3, a.kernel_w = 3;
  a.w = w.data_ptr<float>(), a.y = y.data_ptr<float>(), a.Hy = 5, a.Wy = 5;
  CHECK_THROWS_WITH_AS(cpu::conv2d_direct(a), doctest::Contains("output 5x5 is not the convolution's 6x6"), Error);
  a.params.groups = 2;
  CHECK_THROWS_WITH_AS(cpu::conv2d_direct(a), doctest::Contains("groups = 1 only"), Error);
}
