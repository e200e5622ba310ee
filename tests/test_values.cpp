// tests/test_values.cpp — forward values against references worked out by hand
// (never against minidl itself). Each constant's derivation is in its comment.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "core/philox.h"
#include "minidl.h"
#include "tensor_literals.h"

using namespace minidl;
using doctest::Approx;
using minidl::testing::f32;
using minidl::testing::f64;
using minidl::testing::i64;

namespace {
void check_all(const Tensor& t, const std::vector<double>& expected, double eps = 1e-6) {
  std::vector<double> got = t.to_vector<double>();
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == Approx(expected[i]).epsilon(eps));
  }
}
}  // namespace

TEST_CASE("elementwise values") {
  Tensor x = f32({-2, -0.5, 0, 1.5}, {4});
  check_all(relu(x), {0, 0, 0, 1.5});
  check_all(leaky_relu(x, 0.1), {-0.2, -0.05, 0, 1.5});
  check_all(clamp(x, -1, 1), {-1, -0.5, 0, 1});
  check_all(abs(x), {2, 0.5, 0, 1.5});
  check_all(sigmoid(f32({0, 100, -100}, {3})), {0.5, 1, 0});  // no overflow at ±100
  check_all(tanh(f32({0, 0.5}, {2})), {0, 0.46211715726000974});
  // gelu(x) = x Φ(x): Φ(1) = 0.8413447460685429, Φ(-1) = 0.15865525393145707
  check_all(gelu(f64({1, -1, 0}, {3})), {0.8413447460685429, -0.15865525393145707, 0}, 1e-12);
  check_all(pow(f32({2, 3}, {2}), 2.0), {4, 9});
  check_all(sqrt(f32({4, 2.25}, {2})), {2, 1.5});
  check_all(exp(f64({0, 1}, {2})), {1, M_E});
  check_all(div(i64({7, -7}, {2}), i64({2, 2}, {2})), {3.5, -3.5});  // true division
  check_all(xlogy(f64({0, 2}, {2}), f64({0, M_E}, {2})), {0, 2});     // 0 log 0 = 0
  check_all(where(gt(x, 0.0), x, scalar_like(-1, x)), {-1, -1, -1, 1.5});
  check_all(maximum(x, f32({0}, {1})), {0, 0, 0, 1.5});
}

TEST_CASE("broadcasting: [3, 1] + [4] gives [3, 4]") {
  Tensor a = f32({0, 10, 20}, {3, 1});
  Tensor b = f32({1, 2, 3, 4}, {4});
  Tensor c = a + b;
  CHECK(c.shape() == Shape{3, 4});
  check_all(c, {1, 2, 3, 4, 11, 12, 13, 14, 21, 22, 23, 24});
  // scalars and 0-d tensors broadcast everywhere
  check_all(2.0 * b - 1.0, {1, 3, 5, 7});
  // int64 + f32 promotes to f32
  Tensor mixed = add(i64({1, 2}, {2}), f32({0.5, 0.25}, {2}));
  CHECK(mixed.dtype() == DType::f32);
  check_all(mixed, {1.5, 2.25});
}

TEST_CASE("reductions") {
  Tensor x = f64({1, 2, 3, 4, 5, 6}, {2, 3});
  check_all(sum(x), {21});
  check_all(sum(x, {0}), {5, 7, 9});
  CHECK(sum(x, {1}, true).shape() == Shape{2, 1});
  check_all(mean(x, {1}), {2, 5});
  // var([1, 2, 3, 4]): mean 2.5, squared deviations sum 5: unbiased 5/3, population 5/4
  check_all(var(f64({1, 2, 3, 4}, {4})), {5.0 / 3.0});
  check_all(var(f64({1, 2, 3, 4}, {4}), {}, 0), {1.25});
  // var(x, {1}) is over dim 1 (a second overload var(x, double) once took the braced 1 as the correction)
  check_all(var(f64({1, 2, 3, 4, 0, 0, 0, 8}, {2, 4}), {1}), {5.0 / 3.0, 16.0});
  // logsumexp([0, log 3]) = log(1 + 3) = log 4; and stays finite at 1e4
  check_all(logsumexp(f64({0, std::log(3.0)}, {2}), {0}), {std::log(4.0)});
  check_all(logsumexp(f32({1e4, 1e4}, {2}), {0}), {1e4 + std::log(2.0)});
  {
    // Non-finite rows, as PyTorch: a NaN anywhere gives NaN (also beside ±inf, and
    // a row of NaNs, which a max that skips NaNs once made −inf); all −inf stays −inf.
    const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
    const std::vector<double> got =
        logsumexp(f64({nan, nan, inf, nan, -inf, -inf, inf, 1, 2, nan}, {5, 2}), {1}).to_vector<double>();
    CHECK(std::isnan(got[0]));
    CHECK(std::isnan(got[1]));
    CHECK(got[2] == -inf);
    CHECK(got[3] == inf);
    CHECK(std::isnan(got[4]));
  }
  auto [values, indices] = max(f32({3, 9, 9, 1, 0, 2}, {2, 3}), 1);
  check_all(values, {9, 2});
  check_all(indices, {1, 2});  // the first of tied maxima
  check_all(argmax(f32({3, 9, 1, 10}, {2, 2}), 0), {0, 1});
  check_all(min(f32({3, -9, 1, 10}, {2, 2})), {-9});
  check_all(argmax(f32({3, -9, 1, 10}, {2, 2})), {3});
}

namespace {
// The first extreme of each row by one comparison per element (a NaN wins, the
// first of ties wins): what max / min and their indices must give.
std::vector<int64_t> first_extremes(const Tensor& x, bool is_max) {
  const int64_t rows = x.size(0), cols = x.size(1);
  const std::vector<double> v = x.to(DType::f64).to_vector<double>();
  std::vector<int64_t> out;
  for (int64_t r = 0; r < rows; ++r) {
    const double* row = v.data() + r * cols;
    int64_t best = 0;
    for (int64_t c = 1; c < cols && !std::isnan(row[best]); ++c)
      if (std::isnan(row[c]) || (is_max ? row[c] > row[best] : row[c] < row[best])) best = c;
    out.push_back(best);
  }
  return out;
}
}  // namespace

TEST_CASE("max / min over long rows: the first extreme, a NaN first, ties across blocks, every dtype") {
  // The CPU kernel reduces long rows in blocks of 2048 in vector lanes, then
  // looks for the extreme's position in the block that has it; few long rows
  // are also split among the threads. Rows of 10 000 (both), and one row of
  // 300 000 (split).
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  Generator gen(31);
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::int64}) {
    CAPTURE(t);
    const bool floating = t != DType::int64;
    const int64_t cols = 10000;
    Tensor x = floating ? randn({8, cols}, {.dtype = t}, gen) : randint(-1000, 1000, {8, cols}, {.dtype = t}, gen);
    auto set = [&](int64_t r, int64_t c, double v) { x.narrow(0, r, 1).narrow(1, c, 1).fill_(v); };
    set(0, 4100, 5000), set(0, 100, 5000);     // row 0: tied extremes in blocks 0 and 2
    set(0, 5000, -5000), set(0, 9999, -5000);  // ... for min too
    set(1, 2100, 5000), set(1, 2101, 5000);    // row 1: tied in one block, after a lower extreme
    set(1, 10, 4000);
    x.narrow(0, 2, 1).copy_(arange(0, cols, 1, {.dtype = t}).reshape({1, cols}));  // row 2: each block beats the last
    x.narrow(0, 3, 1).fill_(floating ? -inf : static_cast<double>(std::numeric_limits<int64_t>::min()));
    x.narrow(0, 4, 1).fill_(floating ? inf : static_cast<double>(std::numeric_limits<int64_t>::max()));
    x.narrow(0, 5, 1).fill_(0.0);
    if (floating) {
      set(5, 3000, -0.0);                                                       // row 5: ±0 ties
      set(6, 7000, nan), set(6, 9000, nan), set(6, 20, inf), set(6, 21, -inf);  // row 6: the first NaN wins
      set(7, cols - 1, nan);                                                    // row 7: a NaN last
    }
    for (bool is_max : {true, false}) {
      CAPTURE(is_max);
      const ValuesIndices got = is_max ? max(x, 1) : min(x, 1);
      const std::vector<int64_t> want = first_extremes(x, is_max);
      CHECK(got.indices.to_vector<int64_t>() == want);
      const std::vector<double> values = got.values.to(DType::f64).to_vector<double>(),
                                xs = x.to(DType::f64).to_vector<double>();
      for (int64_t r = 0; r < 8; ++r) {
        CAPTURE(r);
        const double w = xs[r * cols + want[r]];
        CHECK((values[r] == w || (std::isnan(values[r]) && std::isnan(w))));
      }
      CHECK((is_max ? argmax(x, 1) : argmin(x, 1)).to_vector<int64_t>() == want);
    }
  }
  // One long row, split among the threads: its maximum, 10, at 200 000 and again
  // at 250 000, a lower 9 at 5; then a NaN at 100 wins.
  Tensor row = randn({1, 300000}, {}, gen);
  row.narrow(1, 200000, 1).fill_(10.0), row.narrow(1, 250000, 1).fill_(10.0), row.narrow(1, 5, 1).fill_(9.0);
  CHECK(max(row, 1).indices.item<int64_t>() == 200000);
  CHECK(argmax(row.reshape({300000})).item<int64_t>() == 200000);
  row.narrow(1, 100, 1).fill_(nan);
  CHECK(max(row, 1).indices.item<int64_t>() == 100);
  CHECK(std::isnan(max(row.reshape({300000})).item()));
}

TEST_CASE("matmul and linear") {
  // [[1, 2], [3, 4]] · [[5, 6], [7, 8]] = [[19, 22], [43, 50]]
  Tensor a = f32({1, 2, 3, 4}, {2, 2}), b = f32({5, 6, 7, 8}, {2, 2});
  check_all(matmul(a, b), {19, 22, 43, 50});
  check_all(matmul(a.t(), b), {26, 30, 38, 44});  // Aᵀ = [[1, 3], [2, 4]]
  check_all(matmul(f32({1, 1}, {2}), b), {12, 14});
  // linear: x · Wᵀ + b with W = [[1, 0], [0, 2], [1, 1]], b = [0, 1, -1]
  Tensor y = linear(f32({1, 2}, {1, 2}), f32({1, 0, 0, 2, 1, 1}, {3, 2}), f32({0, 1, -1}, {3}));
  check_all(y, {1, 5, 2});
}

TEST_CASE("matmul at awkward sizes matches a naive f64 triple loop") {
  for (auto [M_, N_, K_] : {std::tuple{1, 1, 1}, {7, 17, 129}, {33, 5, 300}, {64, 65, 257}}) {
    // Plain copies: doctest's CAPTURE is a lambda, and clang 14 cannot capture structured bindings.
    const int M = M_, N = N_, K = K_;
    CAPTURE(M);
    CAPTURE(N);
    CAPTURE(K);
    Generator gen(M * 1000 + N);
    Tensor A = randn({K, M}, {}, gen).t();  // transposed operand
    Tensor B = randn({K, N}, {}, gen);
    std::vector<double> a = A.contiguous().to_vector<double>(), bv = B.to_vector<double>();
    std::vector<double> expected(M * N, 0.0);
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j)
        for (int k = 0; k < K; ++k) expected[i * N + j] += a[i * K + k] * bv[k * N + j];
    std::vector<double> got = matmul(A, B).to_vector<double>();
    for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(expected[i]).epsilon(1e-4).scale(std::sqrt(K)));
  }
}

TEST_CASE("conv2d on hand-worked examples") {
  Tensor x = f32({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  Tensor w = f32({1, 0, 0, -1}, {1, 1, 2, 2});  // y = x[i, j] - x[i+1, j+1] = -4 everywhere
  check_all(conv2d(x, w), {-4, -4, -4, -4});
  check_all(conv2d(x, w, f32({0.5}, {1})), {-3.5, -3.5, -3.5, -3.5});
  // padding 1, stride 2: windows at (-1,-1), (-1,1), (1,-1), (1,1):
  //   -x00 = -1;  -x02 = -3;  -x20 = -7;  x11 - x22 = 5 - 9 = -4
  check_all(conv2d(x, w, Tensor(), {.stride = {2, 2}, .padding = {1, 1}}), {-1, -3, -7, -4});
  // dilation 2 with a 2x2 kernel of ones: the four corners 1 + 3 + 7 + 9
  check_all(conv2d(x, ones({1, 1, 2, 2}), Tensor(), {.dilation = {2, 2}}), {20});
  // groups = 2, 1x1 kernels 2 and 3: each channel scaled on its own
  Tensor x2 = f32({1, 2, 3, 4}, {1, 2, 1, 2});
  check_all(conv2d(x2, f32({2, 3}, {2, 1, 1, 1}), Tensor(), {.groups = 2}), {2, 4, 9, 12});
}

TEST_CASE("pooling on a 4x4 ramp") {
  Tensor x = arange(0, 16, 1, {.dtype = DType::f32}).reshape({1, 1, 4, 4});
  check_all(max_pool2d(x, {2, 2}), {5, 7, 13, 15});
  check_all(avg_pool2d(x, {2, 2}), {2.5, 4.5, 10.5, 12.5});
  // padding 1: the corner window holds only x00 = 0; the next one x01 + x02 = 3,
  // divided by 4 (padding counted) or by 2 (not counted)
  Tensor padded = avg_pool2d(x, {2, 2}, {2, 2}, {1, 1}, true);
  CHECK(padded.shape() == Shape{1, 1, 3, 3});
  CHECK(padded.to_vector<float>()[1] == Approx(0.75));
  CHECK(avg_pool2d(x, {2, 2}, {2, 2}, {1, 1}, false).to_vector<float>()[1] == Approx(1.5));
  // adaptive 4 -> 3: windows [0, 2), [1, 3), [2, 4); cell (0, 0) = (0+1+4+5)/4, (1, 1) = (5+6+9+10)/4
  std::vector<float> ad = adaptive_avg_pool2d(x, {3, 3}).to_vector<float>();
  REQUIRE(ad.size() == 9);
  CHECK(ad[0] == Approx(2.5));
  CHECK(ad[4] == Approx(7.5));
  check_all(adaptive_avg_pool2d(x, {1, 1}), {7.5});
}

TEST_CASE("max_pool2d: NaN propagates, ties go to the first element, both kernel paths agree with a naive loop") {
  // A NaN wins its window wherever it sits and its gradient goes to it.
  Tensor x = f32({1, NAN, 3, 4, /**/ 5, 6, 7, 8}, {1, 1, 2, 4}).requires_grad_();
  Tensor y = max_pool2d(x, {2, 2});
  std::vector<float> yv = y.to_vector<float>();
  CHECK(std::isnan(yv[0]));
  CHECK(yv[1] == 8);
  sum(y).backward();  // NaN·1 gradient flows to the NaN's position only
  std::vector<float> g = x.grad().to_vector<float>();
  CHECK(g[0] == 0);
  CHECK(g[1] == 1);
  CHECK(g[7] == 1);
  // Ties: the first element of the window in row-major order takes the gradient.
  Tensor t = f32({2, 2, 2, 2}, {1, 1, 2, 2}).requires_grad_();
  sum(max_pool2d(t, {2, 2})).backward();
  check_all(t.grad(), {1, 0, 0, 0});

  // Against a naive loop: unpadded poolings (whole-plane kernel; the usual 2×2 on
  // an even width takes the AVX-512 pair kernel, on an odd height leaving the
  // last row unused), a padded one (clipped-window kernel), overlapping windows
  // and unequal strides.
  Generator gen(7);
  auto naive = [](const Tensor& x, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
    const int64_t planes = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
    std::vector<float> xv = x.to_vector<float>();
    std::vector<double> out;
    for (int64_t pl = 0; pl < planes; ++pl)
      for (int64_t oh = 0; oh < (H + 2 * ph - kh) / sh + 1; ++oh)
        for (int64_t ow = 0; ow < (W + 2 * pw - kw) / sw + 1; ++ow) {
          double best = -INFINITY;
          for (int64_t i = 0; i < kh; ++i)
            for (int64_t j = 0; j < kw; ++j) {
              int64_t h = oh * sh - ph + i, w = ow * sw - pw + j;
              if (h >= 0 && h < H && w >= 0 && w < W) best = std::max<double>(best, xv[(pl * H + h) * W + w]);
            }
          out.push_back(best);
        }
    return out;
  };
  Tensor r = randn({2, 3, 9, 11}, {}, gen), e = randn({2, 3, 9, 10}, {}, gen), wide = randn({1, 2, 7, 40}, {}, gen);
  // Without grad: the kernels that skip the argmax; then with it, the ones that keep it.
  for (bool grad : {false, true}) {
    CAPTURE(grad);
    Tensor rg = r.detach().requires_grad_(grad), eg = e.detach().requires_grad_(grad);
    check_all(max_pool2d(rg, {3, 2}, {2, 3}), naive(r, 3, 2, 2, 3, 0, 0));
    check_all(max_pool2d(rg, {3, 4}, {1, 2}, {1, 2}), naive(r, 3, 4, 1, 2, 1, 2));
    check_all(max_pool2d(eg, {2, 2}), naive(e, 2, 2, 2, 2, 0, 0));
    check_all(max_pool2d(rg, {2, 2}), naive(r, 2, 2, 2, 2, 0, 0));  // odd width: the last column unused
    check_all(max_pool2d(wide.detach().requires_grad_(grad), {2, 2}), naive(wide, 2, 2, 2, 2, 0, 0));  // rows of 20
  }
  // The gradient lands on each window's winner: an input element equal to an output.
  Tensor eg = e.detach().requires_grad_();
  Tensor y2 = max_pool2d(eg, {2, 2});
  sum(y2).backward();
  std::vector<float> ev = e.to_vector<float>(), gv = eg.grad().to_vector<float>(), yv2 = y2.to_vector<float>();
  int64_t hits = 0;
  for (size_t i = 0; i < ev.size(); ++i)
    if (gv[i] == 1) {
      ++hits;
      CHECK(std::find(yv2.begin(), yv2.end(), ev[i]) != yv2.end());
    }
  CHECK(hits == y2.numel());
}

TEST_CASE("log_softmax and cross_entropy stay finite and exact at logits of ±1e4") {
  // row [1e4, -1e4, 0]: max 1e4, Σ exp(x - max) = 1 + e^-20000 + e^-10000 = 1 exactly in floating point,
  // so log_softmax = x - 1e4 = [0, -2e4, -1e4].
  Tensor logits = f32({1e4f, -1e4f, 0, -1e4f, 1e4f, 1e4f}, {2, 3});
  Tensor ls = log_softmax(logits, 1);
  check_all(ls.narrow(0, 0, 1), {0, -2e4, -1e4});
  // row 2 [-1e4, 1e4, 1e4]: x - max = [-2e4, 0, 0], log Σ = log 2
  check_all(ls.narrow(0, 1, 1), {-2e4 - std::log(2.0), -std::log(2.0), -std::log(2.0)});
  check_all(softmax(logits, 1).narrow(0, 1, 1), {0, 0.5, 0.5});
  // targets [1, 0]: losses 2e4 and 2e4 + log 2
  Tensor target = i64({1, 0}, {2});
  check_all(cross_entropy(logits, target), {2e4 + std::log(2.0) / 2});
  check_all(cross_entropy(logits, target, {.reduction = Reduction::sum}), {4e4 + std::log(2.0)});
  CHECK(std::isfinite(cross_entropy(logits, i64({0, 1}, {2})).item()));
  check_all(cross_entropy(logits, i64({0, 1}, {2}), {.reduction = Reduction::none}), {0, std::log(2.0)});
}

TEST_CASE("cross_entropy with weights, ignore_index and label smoothing") {
  // row 1 [0, log 2, log 3] -> p = [1, 2, 3]/6; row 2 [log 3, 0, log 2] -> p = [3, 1, 2]/6
  Tensor logits = f64({0, std::log(2.0), std::log(3.0), std::log(3.0), 0, std::log(2.0)}, {2, 3});
  Tensor target = i64({0, 2}, {2});  // losses: -log(1/6) = log 6, -log(2/6) = log 3
  const double l6 = std::log(6.0), l3 = std::log(3.0), l2 = std::log(2.0);
  check_all(cross_entropy(logits, target), {(l6 + l3) / 2}, 1e-12);
  check_all(cross_entropy(logits, target, {.reduction = Reduction::none}), {l6, l3}, 1e-12);
  // weights [1, 2, 3]: (1 log 6 + 3 log 3) / (1 + 3)
  Tensor w = f64({1, 2, 3}, {3});
  check_all(cross_entropy(logits, target, {.weight = w}), {(l6 + 3 * l3) / 4}, 1e-12);
  check_all(cross_entropy(logits, target, {.weight = w, .reduction = Reduction::sum}), {l6 + 3 * l3}, 1e-12);
  // ignore_index drops row 2 entirely
  check_all(cross_entropy(logits, i64({0, -100}, {2})), {l6}, 1e-12);
  check_all(cross_entropy(logits, i64({7, 2}, {2}), {.ignore_index = 7}), {l3}, 1e-12);
  // label smoothing 0.3 over C = 3: (1 - 0.3) mean CE + 0.3/3 · mean(-Σ_c log p_c),
  // and -Σ_c log p_c = log 6 + log 3 + log 2 = log 36 for both rows
  check_all(cross_entropy(logits, target, {.label_smoothing = 0.3}),
            {0.7 * (l6 + l3) / 2 + 0.1 * (l6 + l3 + l2)}, 1e-12);
  // nll_loss on log-probabilities equals cross_entropy on logits
  check_all(nll_loss(log_softmax(logits, 1), target), {(l6 + l3) / 2}, 1e-12);
}

TEST_CASE("kl_div matches its formula for every reduction and for log_target") {
  // input = log q with q = [[.25, .75], [.5, .5]]; target p = [[.5, .5], [.9, .1]].
  // pointwise p (log p - log q):
  //   .5 log(.5/.25) = .5 log 2,   .5 log(.5/.75) = .5 log(2/3),
  //   .9 log(.9/.5) = .9 log 1.8,  .1 log(.1/.5) = .1 log .2
  const std::vector<double> pw = {0.5 * std::log(2.0), 0.5 * std::log(2.0 / 3.0), 0.9 * std::log(1.8),
                                  0.1 * std::log(0.2)};
  const double total = pw[0] + pw[1] + pw[2] + pw[3];
  Tensor input = f64({std::log(0.25), std::log(0.75), std::log(0.5), std::log(0.5)}, {2, 2});
  Tensor p = f64({0.5, 0.5, 0.9, 0.1}, {2, 2});
  check_all(kl_div(input, p, Reduction::none), pw, 1e-12);
  check_all(kl_div(input, p, Reduction::sum), {total}, 1e-12);
  check_all(kl_div(input, p, Reduction::mean), {total / 4}, 1e-12);        // over all elements
  check_all(kl_div(input, p, Reduction::batchmean), {total / 2}, 1e-12);   // over the batch of 2
  check_all(kl_div(input, log(p), Reduction::none, true), pw, 1e-12);
  check_all(kl_div(input, log(p), Reduction::batchmean, true), {total / 2}, 1e-12);
  // a zero target contributes 0 (0 log 0 = 0), not NaN
  check_all(kl_div(f64({std::log(0.5), std::log(0.5)}, {1, 2}), f64({1, 0}, {1, 2}), Reduction::sum), {std::log(2.0)},
            1e-12);
}

TEST_CASE("the distillation loss on a small example worked by hand") {
  // s = [1, 2, 0], t = [2, 1, 0], T = 2, α = 0.5, y = 1.
  //   s/T = [.5, 1, 0]: log_softmax = s/T - log(e^.5 + e + 1) = s/T - 1.6802
  //   t/T = [1, .5, 0]: softmax p = [e, e^.5, 1] / 5.3670 = [.5065, .3072, .1863]
  //   KL = Σ p (log p - log q) = .5065 (.5) + .3072 (-.5) + .1863 (0) = 0.0996423
  //   CE(s, 1) = log(e + e² + 1) - 2 = 0.4076060
  //   loss = α KL T² + (1 - α) CE = .5 · .0996423 · 4 + .5 · .4076060 = 0.4030875
  const double T = 2, alpha = 0.5;
  Tensor s = f64({1, 2, 0}, {1, 3}), t = f64({2, 1, 0}, {1, 3});
  Tensor kl = kl_div(log_softmax(s / T, 1), softmax(t / T, 1), Reduction::batchmean);
  Tensor loss = kl * (alpha * T * T) + cross_entropy(s, i64({1}, {1})) * (1 - alpha);
  CHECK(kl.item() == Approx(0.09964225266857782).epsilon(1e-12));
  CHECK(loss.item() == Approx(0.40308748755934587).epsilon(1e-12));
}

TEST_CASE("Philox4x32-10 gives Random123's published known answers; dropout's threshold is exact") {
  auto run = [](std::array<uint32_t, 4> c, uint32_t k0, uint32_t k1) {
    const Philox4x32 out = philox4x32_10({{c[0], c[1], c[2], c[3]}}, k0, k1);
    return std::array<uint32_t, 4>{out.v[0], out.v[1], out.v[2], out.v[3]};
  };
  CHECK(run({0, 0, 0, 0}, 0, 0) == std::array<uint32_t, 4>{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(run({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, 0xffffffff, 0xffffffff) ==
        std::array<uint32_t, 4>{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(run({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, 0xa4093822, 0x299f31d0) ==
        std::array<uint32_t, 4>{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
  CHECK(dropout_keep_threshold(0) == 0);
  CHECK(dropout_keep_threshold(1) == 1u << 24);
  CHECK(dropout_keep_threshold(0.5) == 1u << 23);
  CHECK(dropout_keep_threshold(0.1) == 1677722);  // ⌈0.1 · 2²⁴⌉ = ⌈1677721.6⌉
}

TEST_CASE("mse_loss, dropout and batch_norm") {
  check_all(mse_loss(f32({1, 2, 3}, {3}), f32({1, 0, 6}, {3})), {(0 + 4 + 9) / 3.0});
  check_all(mse_loss(f32({1, 2, 3}, {3}), f32({1, 0, 6}, {3}), Reduction::sum), {13});

  // dropout keeps about 1-p of the elements and scales them by 1/(1-p); same seed, same mask
  Tensor x = ones({10000});
  Generator g1(3), g2(3);
  Tensor d1 = dropout(x, 0.25, true, g1), d2 = dropout(x, 0.25, true, g2);
  std::vector<float> v = d1.to_vector<float>();
  int kept = 0;
  for (float e : v) {
    CHECK((e == 0.0f || e == Approx(4.0 / 3.0)));
    kept += e != 0.0f;
  }
  CHECK(kept > 7300);
  CHECK(kept < 7700);
  CHECK(d1.to_vector<float>() == d2.to_vector<float>());
  CHECK(dropout(x, 0.25, false).is_same(x));
  // Counter-based: the mask is the same whatever the thread count, and a second
  // call draws a new one.
  {
    Tensor big = ones({100000});
    Generator a(8), b(8);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const std::vector<float> one = dropout(big, 0.5, true, a).to_vector<float>();
    omp_set_num_threads(std::max(threads, 2));
    CHECK(dropout(big, 0.5, true, b).to_vector<float>() == one);
    omp_set_num_threads(threads);
    CHECK(dropout(big, 0.5, true, a).to_vector<float>() != one);
  }
  CHECK_THROWS_WITH_AS(dropout(ones({3}, {.dtype = DType::int64}), 0.5, true), doctest::Contains("floating"), Error);

  // batch_norm, training: x = [1, 2, 3, 4] in one channel; mean 2.5, biased var 1.25
  Tensor bx = f64({1, 2, 3, 4}, {4, 1});
  Tensor rm = zeros({1}, {.dtype = DType::f64}), rv = ones({1}, {.dtype = DType::f64});
  Tensor y = batch_norm(bx, rm, rv, Tensor(), Tensor(), true, 0.1, 1e-5);
  double sd = std::sqrt(1.25 + 1e-5);
  check_all(y, {-1.5 / sd, -0.5 / sd, 0.5 / sd, 1.5 / sd}, 1e-12);
  // running stats: mean 0.9·0 + 0.1·2.5; var 0.9·1 + 0.1·(5/3) (unbiased)
  check_all(rm, {0.25}, 1e-12);
  check_all(rv, {0.9 + 0.1 * 5.0 / 3.0}, 1e-12);
  // eval uses the running statistics, with weight and bias
  Tensor e = batch_norm(f64({1.25}, {1, 1}), rm, rv, f64({2}, {1}), f64({1}, {1}), false, 0.1, 0.0);
  check_all(e, {2 * (1.25 - 0.25) / std::sqrt(0.9 + 0.1 * 5.0 / 3.0) + 1}, 1e-12);
}

TEST_CASE("cat, stack, index_select, gather") {
  Tensor a = f32({1, 2, 3, 4}, {2, 2}), b = f32({5, 6}, {1, 2});
  check_all(cat({a, b}, 0), {1, 2, 3, 4, 5, 6});
  check_all(cat({a, a}, 1), {1, 2, 1, 2, 3, 4, 3, 4});
  CHECK(stack({a, a}, 0).shape() == Shape{2, 2, 2});
  check_all(stack({a, a}, 2), {1, 1, 2, 2, 3, 3, 4, 4});
  check_all(index_select(a, 0, i64({1, 1, 0}, {3})), {3, 4, 3, 4, 1, 2});
  check_all(index_select(a, 1, i64({1}, {1})), {2, 4});
  // gather dim 1: out[i][j] = a[i][idx[i][j]]
  check_all(gather(a, 1, i64({1, 1, 0, 1}, {2, 2})), {2, 2, 3, 4});
  check_all(scatter_add(zeros({2, 2}), 1, i64({1, 1, 0, 1}, {2, 2}), f32({1, 2, 3, 4}, {2, 2})), {0, 3, 3, 4});
}

TEST_CASE("fused cross_entropy equals log_softmax + nll_loss (+ smoothing), values and gradients") {
  Generator gen(31);
  for (const DType dt : {DType::f32, DType::f64}) {
    Tensor x2 = mul(randn({9, 5}, {.dtype = dt}, gen), scalar_like(3.0, randn({1}, {.dtype = dt}, gen)));
    Tensor x3 = randn({4, 5, 3}, {.dtype = dt}, gen);  // (N, C, L)
    Tensor t2 = from_vector(std::vector<int64_t>{0, 4, 2, -100, 1, 3, 3, -100, 0}, {9});
    Tensor t3 = randint(0, 5, {4, 3}, {}, gen);
    Tensor w = add(rand({5}, {.dtype = dt}, gen), scalar_like(0.5, randn({1}, {.dtype = dt}, gen)));
    for (auto [x_, t_] : {std::pair{x2, t2}, std::pair{x3, t3}})
      for (Reduction r : {Reduction::none, Reduction::sum, Reduction::mean})
        for (bool weighted : {false, true})
          for (double eps : {0.0, 0.3}) {
            const Tensor x = x_, t = t_;  // plain copies for INFO's lambda (clang 14)
            INFO(dtype_name(dt), " dims ", x.dim(), " reduction ", int(r), " weighted ", weighted, " eps ", eps);
            Tensor a = x.detach().requires_grad_(), b = x.detach().requires_grad_();
            Tensor wt = weighted ? w : Tensor();
            Tensor fused = cross_entropy(a, t, {.weight = wt, .reduction = r, .label_smoothing = eps});
            // The composed form, by the definition: (1 − ε)·nll + ε/C·Σ_c w_c (−log p_c), ignored rows 0,
            // mean dividing both by the total weight of the rows that count.
            const int64_t C = 5;
            Tensor lp = log_softmax(b, 1);
            Tensor nll = nll_loss(lp, t, {.weight = wt, .reduction = Reduction::none});
            Tensor lw = weighted ? mul(lp, (x.dim() == 2 ? w : w.reshape({5, 1}))) : lp;
            Tensor valid = ne(t, scalar_like(-100.0, t)).to(dt);
            Tensor smooth = mul(neg(sum(lw, {1})), valid);
            Tensor per = add(mul(nll, scalar_like(1 - eps, nll)), mul(smooth, scalar_like(eps / C, nll)));
            Tensor composed = per;
            if (r == Reduction::sum) composed = sum(per);
            if (r == Reduction::mean) {
              Tensor tw = weighted ? mul(index_select(w, 0, where(ne(t, scalar_like(-100.0, t)), t, 0.0).reshape({-1})),
                                         valid.reshape({-1}))
                                   : valid;
              composed = div(sum(per), sum(tw));
            }
            std::vector<double> fv = fused.to_vector<double>(), cv = composed.to_vector<double>();
            REQUIRE(fv.size() == cv.size());
            for (size_t i = 0; i < fv.size(); ++i) CHECK(fv[i] == Approx(cv[i]).epsilon(dt == DType::f32 ? 1e-5 : 1e-12));
            Tensor up = randn(fused.shape(), {.dtype = dt}, gen);
            sum(mul(fused, up)).backward();
            sum(mul(composed, up)).backward();
            std::vector<double> ga = a.grad().to_vector<double>(), gb = b.grad().to_vector<double>();
            for (size_t i = 0; i < ga.size(); ++i)
              CHECK(ga[i] == Approx(gb[i]).epsilon(dt == DType::f32 ? 1e-4 : 1e-10).scale(1.0));
          }
  }
}

TEST_CASE("fused kl_div_logits equals kl_div(log_softmax(s/T), softmax(t/T)), values and both gradients") {
  Generator gen(37);
  for (const DType dt : {DType::f32, DType::f64})
    for (double T : {1.0, 4.0})
      for (Reduction r : {Reduction::none, Reduction::sum, Reduction::mean, Reduction::batchmean}) {
        INFO(dtype_name(dt), " T ", T, " reduction ", int(r));
        // A teacher more confident than the student.
        Tensor s = randn({7, 10}, {.dtype = dt}, gen);
        Tensor t = mul(randn({7, 10}, {.dtype = dt}, gen), scalar_like(4.0, s));
        Tensor sa = s.detach().requires_grad_(), ta = t.detach().requires_grad_();
        Tensor sb = s.detach().requires_grad_(), tb = t.detach().requires_grad_();
        Tensor fused = kl_div_logits(sa, ta, T, r);
        Tensor inv_t = scalar_like(1.0 / T, s);
        Tensor composed = kl_div(log_softmax(mul(sb, inv_t), 1), softmax(mul(tb, inv_t), 1), r);
        if (r == Reduction::none) composed = sum(composed, {1});  // kl_div is pointwise; the fused op per row
        if (r == Reduction::mean) CHECK(composed.item<double>() == Approx(fused.item<double>()).epsilon(1e-4));
        std::vector<double> fv = fused.to_vector<double>(), cv = composed.to_vector<double>();
        REQUIRE(fv.size() == cv.size());
        for (size_t i = 0; i < fv.size(); ++i) CHECK(fv[i] == Approx(cv[i]).epsilon(dt == DType::f32 ? 1e-4 : 1e-11));
        CHECK(fv[0] > 0);  // a real divergence, not the trivial 0
        Tensor up = randn(fused.shape(), {.dtype = dt}, gen);
        sum(mul(fused, up)).backward();
        sum(mul(composed, up)).backward();
        for (auto [a, b] : {std::pair{sa, sb}, std::pair{ta, tb}}) {
          std::vector<double> ga = a.grad().to_vector<double>(), gb = b.grad().to_vector<double>();
          double norm = 0;
          for (size_t i = 0; i < ga.size(); ++i) {
            CHECK(ga[i] == Approx(gb[i]).epsilon(dt == DType::f32 ? 1e-4 : 1e-10).scale(1e-3));
            norm += std::abs(gb[i]);
          }
          CHECK(norm > 1e-6);
        }
      }
}

TEST_CASE("kl_div_logits: where p_teacher underflows to 0 the gradients stay finite") {
  // Teacher logits 60 apart: exp(−60/1) underflows in f32. The composed form's teacher
  // gradient goes through d(t log t)/dt = log t + 1 = −inf there and comes out NaN; the
  // fused one holds p_t (log p_t − log p_s − KL) with finite logs, so 0.
  Tensor s = f32({0.5f, -0.3f, 0.1f, 1.0f}, {1, 4});
  Tensor t = f32({0.0f, -120.0f, 60.0f, 59.0f}, {1, 4});
  Tensor sa = s.detach().requires_grad_(), ta = t.detach().requires_grad_(), sb = s.detach().requires_grad_();
  Tensor fused = kl_div_logits(sa, ta, 1.0, Reduction::sum);
  Tensor composed = sum(kl_div(log_softmax(sb, 1), softmax(t, 1), Reduction::sum));
  CHECK(fused.item<double>() == Approx(composed.item<double>()).epsilon(1e-5));
  fused.backward();
  composed.backward();
  std::vector<double> gs = sa.grad().to_vector<double>(), gc = sb.grad().to_vector<double>();
  std::vector<double> gt = ta.grad().to_vector<double>();
  for (size_t i = 0; i < gs.size(); ++i) {
    CHECK(gs[i] == Approx(gc[i]).epsilon(1e-5).scale(1e-6));
    CHECK(std::isfinite(gt[i]));
  }
  CHECK(gt[1] == 0.0);  // p_t = 0 exactly: no pull on that logit
}

TEST_CASE("kl_div_logits: identical logits give 0; logits of ±1e4 stay finite and exact") {
  Tensor s = f32({1e4f, -1e4f, 0.0f, 3.0f, 2.0f, 1.0f}, {2, 3});
  CHECK(kl_div_logits(s, s, 2.0, Reduction::sum).item<double>() == Approx(0.0).scale(1.0));
  // Student sure of class 0 (p ≈ 1), teacher uniform: KL = Σ 1/3 (log 1/3 − log p_s,c) with
  // log p_s = (0, −2e4, −1e4): (−log 3) + (2e4 + 1e4)/3.
  Tensor st = f32({1e4f, -1e4f, 0.0f}, {1, 3}), te = f32({0.0f, 0.0f, 0.0f}, {1, 3});
  CHECK(kl_div_logits(st, te, 1.0, Reduction::sum).item<double>() == Approx(1e4 - std::log(3.0)).epsilon(1e-6));
}

TEST_CASE("reductions of a few long rows (columns split across threads) match a serial f64 reference") {
  // Rows of 50 001, reduced one at a time (one row: fewer rows than threads, so the
  // row's columns are split among the threads) and all three together (rows in
  // parallel when there are at most 3 threads). Ties and NaN sit far apart, so they
  // land in different chunks and must resolve across them.
  Generator gen(41);
  const int64_t rows = 3, cols = 50001;
  std::vector<double> v = randn({rows, cols}, {.dtype = DType::f64}, gen).to_vector<double>();
  v[1 * cols + 40000] = 7.5, v[1 * cols + 10] = 7.5;  // row 1: two equal maxima; the first wins
  v[2 * cols + 20000] = NAN, v[2 * cols + 45000] = NAN;  // row 2: the first NaN wins
  Tensor x = from_vector(v, {rows, cols});
  for (bool one_row : {true, false})
    for (int64_t r = 0; r < rows; ++r) {
      CAPTURE(one_row);
      CAPTURE(r);
      Tensor xr = one_row ? x.narrow(0, r, 1) : x;
      const size_t at = one_row ? 0 : static_cast<size_t>(r);
      const double s = sum(xr, {1}).to_vector<double>()[at], m = mean(xr, {1}).to_vector<double>()[at];
      const double va = var(xr, {1}).to_vector<double>()[at], lse = logsumexp(xr, {1}).to_vector<double>()[at];
      auto [mx, mx_i] = max(xr, 1);
      auto [mn, mn_i] = min(xr, 1);
      const double mxv = mx.to_vector<double>()[at];
      const int64_t mxi = mx_i.to_vector<int64_t>()[at], mni = mn_i.to_vector<int64_t>()[at];
      const double* row = v.data() + r * cols;
      if (r == 2) {  // the NaN row
        CHECK(std::isnan(mxv));
        CHECK(mxi == 20000);
        CHECK(mni == 20000);
        CHECK(std::isnan(s));
        CHECK(std::isnan(lse));
        continue;
      }
      double ref_s = 0, ref_ss = 0, ref_m = -INFINITY, ref_e = 0;
      int64_t arg_max = 0, arg_min = 0;
      for (int64_t c = 0; c < cols; ++c) {
        ref_s += row[c];
        if (row[c] > row[arg_max]) arg_max = c;
        if (row[c] < row[arg_min]) arg_min = c;
        ref_m = std::max(ref_m, row[c]);
      }
      for (int64_t c = 0; c < cols; ++c) {
        ref_ss += (row[c] - ref_s / cols) * (row[c] - ref_s / cols);
        ref_e += std::exp(row[c] - ref_m);
      }
      CHECK(s == Approx(ref_s).epsilon(1e-12));
      CHECK(m == Approx(ref_s / cols).epsilon(1e-10));
      CHECK(va == Approx(ref_ss / (cols - 1)).epsilon(1e-12));
      CHECK(lse == Approx(ref_m + std::log(ref_e)).epsilon(1e-12));
      CHECK(mxi == arg_max);
      CHECK(mni == arg_min);
      CHECK(mxv == row[arg_max]);
      if (r == 1) CHECK(mxi == 10);  // the first of the two 7.5s
    }
  // The whole tensor is one row for sum() and max() without dims.
  double all = 0;
  for (int64_t i = 0; i < 2 * cols; ++i) all += v[i];
  CHECK(sum(x.narrow(0, 0, 2)).item<double>() == Approx(all).epsilon(1e-12));
  CHECK(max(x.narrow(0, 0, 2)).item<double>() == 7.5);
}
