// tests/test_gemm.cpp — every GEMM kernel against a naive f64 triple loop, at
// awkward sizes (1, 7, 17, 129, non-multiples of every block size), with every
// transpose, alpha and beta, and a C whose rows are strided.
#include <doctest/doctest.h>

#include <cmath>

#include "minidl.h"
#include "ops/cpu/kernels.h"

using namespace minidl;
using cpu::GemmKernel;

namespace {

TensorArg matrix(const Tensor& t) {
  TensorArg a = t.arg();
  REQUIRE(a.ndim == 2);
  return a;
}

// max |got - want| / (|want|_max + 1) over the output
// epilogue: 0 none, 1 bias per column, 2 bias per row; relu on top of either.
double check_gemm(GemmKernel kernel, int64_t M, int64_t N, int64_t K, bool ta, bool tb, double alpha, double beta,
                  uint64_t seed, int bias_kind = 0, bool relu = false) {
  Generator gen(seed);
  // Transposed operands are views of a (K, M) / (N, K) tensor: other strides, same data.
  Tensor A = ta ? randn({K, M}, {}, gen).t() : randn({M, K}, {}, gen);
  Tensor B = tb ? randn({N, K}, {}, gen).t() : randn({K, N}, {}, gen);
  // C lives in a wider buffer: row stride N + 3.
  Tensor C_full = randn({M, N + 3}, {}, gen);
  Tensor C = C_full.narrow(1, 0, N);
  std::vector<double> a = A.contiguous().to_vector<double>(), b = B.contiguous().to_vector<double>();
  std::vector<double> c0 = C.contiguous().to_vector<double>();
  std::vector<double> pad0 = C_full.narrow(1, N, 3).contiguous().to_vector<double>();

  Tensor bias = randn({bias_kind == 2 ? M : N}, {}, gen);
  std::vector<double> bv = bias.to_vector<double>();
  GemmEpilogue epi{.bias = bias_kind ? bias.raw_data() : nullptr, .bias_per_row = bias_kind == 2, .relu = relu};
  cpu::gemm(M, N, K, alpha, matrix(A), matrix(B), beta, matrix(C), kernel, epi);

  std::vector<double> got = C.contiguous().to_vector<double>();
  double worst = 0, scale = 1;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += a[i * K + k] * b[k * N + j];
      double want = alpha * acc + beta * c0[i * N + j];
      if (bias_kind) want += bv[bias_kind == 2 ? i : j];
      if (relu) want = std::max(want, 0.0);
      scale = std::max(scale, std::abs(want));
      worst = std::max(worst, std::abs(got[i * N + j] - want));
    }
  // the padding columns beside C were not touched
  CHECK(C_full.narrow(1, N, 3).contiguous().to_vector<double>() == pad0);
  return worst / scale;
}

}  // namespace

TEST_CASE("every GEMM kernel matches a naive f64 reference") {
  const GemmKernel kernels[] = {GemmKernel::reference, GemmKernel::generic, GemmKernel::avx2, GemmKernel::avx512,
                                GemmKernel::small_m};
  const int64_t sizes[][3] = {{1, 1, 1},   {7, 17, 129}, {17, 7, 1},    {129, 33, 7},  {15, 33, 193},
                              {29, 65, 385}, {170, 40, 20}, {3, 3200, 9}, {1, 200, 300}, {128, 31, 784}};
  uint64_t seed = 1;
  for (GemmKernel k : kernels) {
    if (!cpu::gemm_kernel_supported(k)) {
      MESSAGE("skipping " << std::string(cpu::gemm_kernel_name(k)) << ": not supported by this CPU");
      continue;
    }
    CAPTURE(cpu::gemm_kernel_name(k));
    for (const auto& s : sizes)
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          CAPTURE(s[0]);
          CAPTURE(s[1]);
          CAPTURE(s[2]);
          CAPTURE(ta);
          CAPTURE(tb);
          // relative error of f32 sums of K products: ~1e-7 · sqrt(K)
          CHECK(check_gemm(k, s[0], s[1], s[2], ta, tb, 1.0, 0.0, seed++) < 1e-5);
        }
    CHECK(check_gemm(k, 37, 45, 300, false, true, 0.5, 1.0, seed++) < 1e-5);   // accumulate into C
    CHECK(check_gemm(k, 20, 70, 250, true, false, -2.0, 0.25, seed++) < 1e-5);  // scale both
  }
}

TEST_CASE("GEMM epilogue: bias per column or per row, then ReLU, on every kernel") {
  const GemmKernel kernels[] = {GemmKernel::reference, GemmKernel::generic, GemmKernel::avx2, GemmKernel::avx512,
                                GemmKernel::small_m};
  // K = 400 > KC: the epilogue must run once, after the last K block, not after each.
  const int64_t sizes[][3] = {{1, 1, 1}, {7, 17, 129}, {29, 65, 400}, {170, 40, 20}, {128, 300, 33}};
  uint64_t seed = 500;
  for (GemmKernel k : kernels) {
    if (!cpu::gemm_kernel_supported(k)) continue;
    CAPTURE(cpu::gemm_kernel_name(k));
    for (const auto& s : sizes)
      for (int bias_kind : {0, 1, 2})
        for (bool relu : {false, true}) {
          if (bias_kind == 0 && !relu) continue;
          CAPTURE(s[0]);
          CAPTURE(s[1]);
          CAPTURE(s[2]);
          CAPTURE(bias_kind);
          CAPTURE(relu);
          CHECK(check_gemm(k, s[0], s[1], s[2], false, true, 1.0, 0.0, seed++, bias_kind, relu) < 1e-5);
        }
    CHECK(check_gemm(k, 33, 70, 250, true, false, 0.5, 1.0, seed++, 2, true) < 1e-5);  // with beta: C·β + AB + bias
  }
}

TEST_CASE("GEMM: beta = 0 ignores NaN in C; K = 0 only scales C") {
  for (GemmKernel k : {GemmKernel::reference, GemmKernel::avx2, GemmKernel::avx512, GemmKernel::small_m}) {
    if (!cpu::gemm_kernel_supported(k)) continue;
    CAPTURE(cpu::gemm_kernel_name(k));
    Tensor A = ones({20, 5}), B = ones({5, 40});
    Tensor C = full({20, 40}, std::nan(""));
    cpu::gemm(20, 40, 5, 1.0, matrix(A), matrix(B), 0.0, matrix(C), k);
    CHECK(max(C).item() == 5);
    CHECK(min(C).item() == 5);
    Tensor E = empty({20, 0}), F = empty({0, 40});
    cpu::gemm(20, 40, 0, 1.0, matrix(E), matrix(F), 0.5, matrix(C), k);
    CHECK(max(C).item() == 2.5);
  }
}
