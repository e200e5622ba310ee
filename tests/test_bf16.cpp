// tests/test_bf16.cpp — bf16 inference: every bf16 GEMM kernel this CPU runs
// against the f64 product of the same bf16 values (odd shapes, both output
// types, bias and ReLU); the column packer against the weight packer; bf16
// linear against f32; whole models converted with
// to(bf16) against their f32 selves; the refusals (gradients, training-mode BN).
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "minidl.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"

using namespace minidl;
using cpu::Bf16GemmKernel;

namespace {

const Bf16GemmKernel kBf16Kernels[] = {Bf16GemmKernel::reference, Bf16GemmKernel::avx512_cvt,
                                       Bf16GemmKernel::avx512_bf16, Bf16GemmKernel::amx, Bf16GemmKernel::small_m};

std::vector<uint16_t> random_bf16(int64_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<uint16_t> v(static_cast<size_t>(n));
  for (auto& b : v) b = bf16::from_float(d(rng)).bits;
  return v;
}
double widen(uint16_t b) {
  bf16 h;
  h.bits = b;
  return static_cast<float>(h);
}

}  // namespace

TEST_CASE("gemm_bf16: every kernel this CPU runs against the f64 product of the same bf16 values") {
  MESSAGE("CPU: " << cpu::cpu_summary()
                  << "; bf16 GEMM: " << std::string(cpu::gemm_bf16_kernel_name(Bf16GemmKernel::best)));
  for (Bf16GemmKernel k : kBf16Kernels)
    if (!cpu::gemm_bf16_kernel_supported(k))
      MESSAGE("skipped " << std::string(cpu::gemm_bf16_kernel_name(k)) << ": this CPU lacks it");
  const int64_t shapes[][3] = {{1, 1, 1},
                               {1, 10, 784},
                               {2, 17, 5},
                               {3, 33, 31},
                               {5, 64, 64},
                               {6, 16, 2},
                               {7, 130, 3},
                               {13, 47, 257},
                               {64, 256, 512},
                               {1, 512, 784},
                               // AMX: 16-row blocks, a K tail past the 32-element chunks (odd too), rows left over
                               {16, 16, 32},
                               {32, 40, 1001},
                               {35, 100, 784},
                               {49, 33, 130},
                               {80, 70, 63}};
  std::mt19937_64 rng(1);
  for (const auto& s : shapes) {
    const int64_t M = s[0], N = s[1], K = s[2];
    const auto x = random_bf16(M * K, rng), w = random_bf16(N * K, rng);
    std::vector<float> bias(static_cast<size_t>(N));
    for (auto& b : bias) b = static_cast<float>(rng() % 100) / 25.0f - 2.0f;
    std::vector<uint16_t> packed(static_cast<size_t>(cpu::gemm_bf16_packed_elements(N, K)));
    cpu::gemm_bf16_pack_weight(w.data(), K, N, K, packed.data());
    for (Bf16GemmKernel k : kBf16Kernels) {
      if (!cpu::gemm_bf16_kernel_supported(k)) continue;
      for (bool relu : {false, true})
        for (bool bf16_out : {false, true}) {
          CAPTURE(cpu::gemm_bf16_kernel_name(k));
          CAPTURE(M);
          CAPTURE(N);
          CAPTURE(K);
          CAPTURE(relu);
          CAPTURE(bf16_out);
          std::vector<float> y(M * N, std::nanf(""));  // poisoned: a forgotten element fails
          std::vector<uint16_t> yb(M * N, 0x7fc1);     // a NaN pattern
          cpu::Bf16GemmArgs a;
          a.M = M, a.N = N, a.K = K, a.x = x.data(), a.ldx = K, a.w_packed = packed.data();
          a.w = w.data(), a.ldw = K;  // as stored, for the small-M kernel
          a.bias = relu ? nullptr : bias.data(), a.relu = relu, a.ldy = N;
          if (bf16_out)
            a.y_bf16 = yb.data();
          else
            a.y = y.data();
          cpu::gemm_bf16(a, k);
          int bad = 0;
          for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
              double e = relu ? 0.0 : bias[n], scale = std::abs(e);
              for (int64_t kk = 0; kk < K; ++kk) {
                const double p = widen(x[m * K + kk]) * widen(w[n * K + kk]);
                e += p, scale += std::abs(p);
              }
              if (relu) e = std::max(e, 0.0);
              const double got = bf16_out ? widen(yb[m * N + n]) : y[m * N + n];
              // f32 sums (K roundings), then one bf16 rounding of the output.
              const double tol = 1e-6 * scale + (bf16_out ? std::abs(e) / 256 : 0) + 1e-6;
              bad += !(std::abs(got - e) <= tol);
            }
          CHECK(bad == 0);
        }
    }
  }
}

TEST_CASE("gemm_bf16_pack_columns: the packed layout of Bᵀ rounded, as pack_weight makes it from bf16 rows") {
  // B (K, N) f32 with row stride ldb > N; its transpose rounded to bf16 and
  // packed by gemm_bf16_pack_weight must give the same bits: odd K (the last
  // pair's high half is +0.0), N off the 16-column panels, whole panels (the
  // AVX-512 path), rounding ties, NaN and infinities.
  std::mt19937_64 rng(9);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (const auto& shape : {std::pair<int64_t, int64_t>{1, 1}, {9, 16}, {288, 196}, {7, 45}, {16, 33}}) {
    const int64_t K = shape.first, N = shape.second;  // (clang cannot CAPTURE a structured binding)
    CAPTURE(K);
    CAPTURE(N);
    const int64_t ldb = N + 3;
    std::vector<float> b(static_cast<size_t>(K * ldb));
    for (auto& v : b) v = d(rng);
    b[0] = std::nanf("");
    if (b.size() > 2) b[1] = INFINITY, b[2] = 1.0f + 0x1p-8f;  // a tie: rounds to even (1.0)
    if (b.size() > 3) b[3] = -1.0f - 3 * 0x1p-8f;              // a tie rounding away (to −1.015625)
    std::vector<uint16_t> rows(static_cast<size_t>(N * K));    // Bᵀ (N, K), rounded
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) rows[n * K + k] = bf16::from_float(b[k * ldb + n]).bits;
    std::vector<uint16_t> want(cpu::gemm_bf16_packed_elements(N, K), 0xdead), got(want.size(), 0xbeef);
    cpu::gemm_bf16_pack_weight(rows.data(), K, N, K, want.data());
    cpu::gemm_bf16_pack_columns(b.data(), ldb, K, N, got.data());
    CHECK(got == want);
  }
}

TEST_CASE("linear in bf16: near the f32 linear of the same values; fused ReLU; 3-D input") {
  Generator gen(2);
  NoGradGuard no_grad;
  for (int64_t batch : {1, 4, 37}) {
    CAPTURE(batch);
    Tensor x = randn({batch, 70}, {}, gen).to(DType::bf16), w = randn({19, 70}, {}, gen).to(DType::bf16);
    Tensor b = randn({19}, {}, gen).to(DType::bf16);
    Tensor y = linear(x, w, b);
    CHECK(y.dtype() == DType::bf16);
    const Tensor ref = linear(x.to(DType::f32), w.to(DType::f32), b.to(DType::f32));
    CHECK(sqnr_db(ref, y.to(DType::f32)) > 40);  // one bf16 rounding of the output: ≈ 50 dB
    CHECK(linear(x, w, b, Activation::relu).to(DType::f32).to_vector<float>() ==
          relu(y).to(DType::f32).to_vector<float>());
    CHECK(linear(x.reshape({batch, 1, 70}), w, b).shape() == Shape{batch, 1, 19});
  }
}

TEST_CASE("a model converted to bf16 gives the f32 model's predictions (mlp, cnn with conv, BN and pooling)") {
  for (const char* name : {"mlp", "cnn"}) {
    CAPTURE(name);
    Generator gen(3);
    auto model = nn::build_model(name, gen);
    model->eval();
    Tensor x = randn({16, 1, 28, 28}, {}, gen);
    NoGradGuard no_grad;
    const Tensor y32 = model->forward(x);
    model->to(DType::bf16);
    const Tensor y16 = model->forward(x.to(DType::bf16));
    CHECK(y16.dtype() == DType::bf16);
    CHECK(sqnr_db(y32, y16.to(DType::f32)) > 25);
    CHECK(mean(eq(argmax(y16.to(DType::f32), 1), argmax(y32, 1)).to(DType::f64)).item() >= 0.9);
  }
}

TEST_CASE("bf16 refuses what it cannot do, naming it") {
  Generator gen(4);
  Tensor x = randn({2, 6}, {}, gen).to(DType::bf16), w = randn({3, 6}, {.requires_grad = true}, gen);
  Tensor wb = w.detach().to(DType::bf16).requires_grad_();
  CHECK_THROWS_WITH_AS(linear(x, wb), doctest::Contains("inference only"), Error);
  // The small-M kernel reads the weight as stored, the others packed: a missing one is named.
  const uint16_t one[2] = {0x3f80, 0x3f80};
  uint16_t out[1] = {};
  cpu::Bf16GemmArgs args;
  args.M = args.N = 1, args.K = 2, args.x = one, args.ldx = 2, args.y_bf16 = out, args.ldy = 1;
  CHECK_THROWS_WITH_AS(cpu::gemm_bf16(args, Bf16GemmKernel::small_m), doctest::Contains("Bf16GemmArgs::w)"), Error);
  CHECK_THROWS_WITH_AS(cpu::gemm_bf16(args, Bf16GemmKernel::reference), doctest::Contains("w_packed"), Error);
  args.w = one, args.ldw = 2;
  cpu::gemm_bf16(args, Bf16GemmKernel::small_m);
  CHECK(out[0] == 0x4000);  // 1·1 + 1·1 = 2
  CHECK_THROWS_WITH_AS(linear(x, w.detach()), doctest::Contains("dtypes differ"), Error);
  Tensor img = randn({1, 2, 4, 4}, {}, gen).to(DType::bf16);
  Tensor ones2 = ones({2}).to(DType::bf16), zeros2 = zeros({2}).to(DType::bf16);
  CHECK_THROWS_WITH_AS(batch_norm(img, zeros2, ones2, ones2, zeros2, /*training=*/true, 0.1, 1e-5),
                       doctest::Contains("training mode"), Error);
  CHECK_THROWS_WITH_AS(conv2d(img, randn({3, 2, 3, 3}, {}, gen), Tensor()), doctest::Contains("dtypes differ"), Error);
  Tensor wconv = randn({3, 2, 3, 3}, {}, gen).to(DType::bf16).requires_grad_();
  CHECK_THROWS_WITH_AS(conv2d(img, wconv, Tensor()), doctest::Contains("inference only"), Error);
}

TEST_CASE("conv2d in bf16: the f64 convolution of the same bf16 values, rounded to bf16") {
  // Where the bf16 GEMM outruns f32 the weight stays bf16 and the GEMM is bf16;
  // elsewhere the inputs are widened. Either way: products of bf16 values are
  // exact, sums are f32, the output is rounded to bf16 (relative 2^-8 at most).
  MESSAGE("bf16 conv2d on the bf16 GEMM: " << (cpu::gemm_bf16_outruns_f32() ? "yes" : "no (widened to f32)"));
  Generator gen(5);
  NoGradGuard no_grad;
  struct Geometry {
    int64_t N, C, H, O, k;
    Conv2dOptions o;
    bool relu;
  };
  for (const Geometry& t :
       {Geometry{2, 3, 9, 5, 3, {.padding = {1, 1}}, true},
        Geometry{5, 4, 8, 6, 3, {.stride = {2, 2}, .groups = 2}, false}, Geometry{1, 6, 7, 4, 1, {}, true}}) {
    CAPTURE(t.N);
    CAPTURE(t.k);
    const Tensor x = randn({t.N, t.C, t.H, t.H}, {}, gen).to(DType::bf16);
    const Tensor w = randn({t.O, t.C / t.o.groups, t.k, t.k}, {}, gen).to(DType::bf16);
    const Tensor b = randn({t.O}, {}, gen).to(DType::bf16);
    const Tensor got = conv2d(x, w, b, t.o, t.relu ? Activation::relu : Activation::none);
    REQUIRE(got.dtype() == DType::bf16);
    const Tensor want =
        conv2d(x.to(DType::f64), w.to(DType::f64), b.to(DType::f64), t.o, t.relu ? Activation::relu : Activation::none);
    const std::vector<double> g = got.to(DType::f64).to_vector<double>(), e = want.to_vector<double>();
    REQUIRE(g.size() == e.size());
    for (size_t i = 0; i < g.size(); ++i) CHECK(std::abs(g[i] - e[i]) <= 0x1p-8 * std::abs(e[i]) + 1e-6);
  }
}
