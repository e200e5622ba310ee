// tests/test_cuda_emulated_layers.cpp — the CUDA kernels of whole layers run on
// the host through tests/cuda_emulator.h: the hand-written CSR Linear
// (cuda/spmm_kernels.cuh), the int8 dynamic-quantized Linear
// (cuda/qgemm_kernels.cuh) and the bf16 Linear (cuda/bf16_kernels.cuh), each
// against the CPU's layer. Apart from test_cuda_emulated.cpp (the op kernels)
// so that ctest runs the two side by side: under ASan each takes a while.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "compress/sparse.h"
#include "minidl.h"
#include "ops/cpu/kernels.h"
// then the emulator, whose __global__, __shared__ and blockIdx minidl's headers must not see
#include "cuda_emulator.h"
// after the emulator: the kernels see its blockIdx, __syncthreads, shuffles
#include "cuda/bf16_kernels.cuh"
#include "cuda/qgemm_kernels.cuh"
#include "cuda/spmm_kernels.cuh"
#include "emulated_checks.h"

using namespace minidl;
using minidl::testing::poisoned;
using minidl::testing::worst;

TEST_CASE("the hand-written CUDA CSR layer on the host emulator equals the dense layer: ragged rows, tails, epilogue") {
  namespace sk = minidl::cuda::spmm_kernels;
  Generator gen(12);
  const int64_t out = 37, in = 50;  // 37 rows: the last block of eight warps is partly idle
  Tensor w = randn({out, in}, {}, gen);
  w = mul(w, ge(rand({out, in}, {}, gen), scalar_tensor(0.8)).to(DType::f32));  // ~80% zeros, rows of every length
  w.narrow(0, 3, 1).fill_(0.0);                                                 // an empty row
  w.narrow(0, 5, 1).copy_(randn({1, in}, {}, gen));                             // a full one: two chunks of 32 lanes
  const auto m = compress::SparseMatrix::from_dense(w, compress::SparseFormat::csr(), compress::IndexWidth::i32);
  const SparseMatrixArg a = m.arg();
  const Tensor bias = randn({out}, {}, gen);
  for (int64_t N : {1, 5, 8, 19}) {
    for (bool relu : {false, true}) {
      CAPTURE(N);
      CAPTURE(relu);
      const Tensor x = randn({N, in}, {}, gen);
      Tensor want = add(matmul(x.to(DType::f64), w.to(DType::f64).t()), bias.to(DType::f64));
      if (relu) want = minidl::relu(want);
      Tensor got = poisoned({N, out}, DType::f32);
      const auto* cols = static_cast<const int32_t*>(a.col_index);
      const dim3 block{32, sk::kSpmmWarpsPerBlock};
      const auto row_blocks = static_cast<unsigned>((out + sk::kSpmmWarpsPerBlock - 1) / sk::kSpmmWarpsPerBlock);
      if (N == 1)
        minidl::testing::emulate({row_blocks, 1, 1}, block, [&] {
          sk::csr_linear_kernel<1>(a.row_ptr, cols, a.values, out, x.data_ptr<float>(), in, got.data_ptr<float>(), out,
                                   N, bias.data_ptr<float>(), relu);
        });
      else
        minidl::testing::emulate({row_blocks, static_cast<unsigned>((N + 7) / 8), 1}, block, [&] {
          sk::csr_linear_kernel<sk::kSpmmBatchTile>(a.row_ptr, cols, a.values, out, x.data_ptr<float>(), in,
                                                    got.data_ptr<float>(), out, N, bias.data_ptr<float>(), relu);
        });
      CHECK(worst(got, want.to(DType::f32)) <= 2e-6);
    }
  }
}

namespace {
// The three launches of cuda/qgemm.cu on the emulator: y = the GPU's int8 layer.
// `range_blocks` partial ranges (the GPU uses up to 128; a few here, folded the same way).
Tensor emulated_int8_linear(const Tensor& x, const Int8Weight& rows, const Tensor& bias, bool relu,
                            unsigned range_blocks) {
  namespace qk = minidl::cuda::qgemm_kernels;
  const int64_t M = x.size(0), K = x.size(1), N = rows.out_features, words = (K + 3) / 4;
  std::vector<float> lo(range_blocks, NAN), hi(range_blocks, NAN);
  std::vector<int32_t> bad(range_blocks, -1), xq(static_cast<size_t>(M * words), 0x5a5a5a5a);
  QuantParams params{NAN, -999};
  Tensor y = poisoned({M, N}, DType::f32);
  const float* xp = x.data_ptr<float>();
  minidl::testing::emulate({range_blocks, 1, 1}, {256, 1, 1},
                           [&] { qk::range_kernel(xp, M * K, lo.data(), hi.data(), bad.data()); });
  minidl::testing::emulate({2, 1, 1}, {256, 1, 1}, [&] {
    qk::quantize_kernel(xp, M, K, K, words, lo.data(), hi.data(), bad.data(), static_cast<int>(range_blocks), &params,
                        xq.data());
  });
  const dim3 grid{static_cast<unsigned>((N + 63) / 64), static_cast<unsigned>((M + 63) / 64), 1};
  minidl::testing::emulate(grid, {16, 16, 1}, [&] {
    qk::qgemm_kernel(xq.data(), reinterpret_cast<const int32_t*>(rows.packed.data_ptr<int8_t>()), M, N, words,
                     rows.row_sums.data_ptr<int32_t>(), rows.scale.data_ptr<float>(),
                     bias.defined() ? bias.data_ptr<float>() : nullptr, relu, &params, y.data_ptr<float>(), N);
  });
  return y;
}
}  // namespace

TEST_CASE(
    "the CUDA int8 layer on the host emulator gives the CPU's int8 layer bit for bit: tails, zero point, partials") {
  Generator gen(21);
  // (M, N, K): one sample; K not a multiple of 4 (padding) and a tile tail in N;
  // M past one 64-row tile with K past one 64-byte step; exact tiles.
  for (const auto& [M, N, K] :
       std::vector<std::array<int64_t, 3>>{{1, 10, 7}, {5, 70, 33}, {65, 3, 130}, {64, 64, 64}}) {
    const Tensor w = randn({N, K}, {}, gen);
    const Tensor bias = randn({N}, {}, gen);
    for (bool per_channel : {true, false}) {
      const QuantizedWeight q = quantize_weight_int8(w, per_channel);
      const Int8Weight cpu_weight = pack_int8_weight(q.values, q.scale),
                       rows = pack_int8_weight_rows(q.values, q.scale);
      CHECK(rows.packed.size(1) % 4 == 0);
      for (int variant = 0; variant < 3; ++variant) {
        const bool relu = variant == 1, with_bias = variant != 2;
        Tensor x = randn({M, K}, {}, gen);
        if (variant == 1) x = minidl::relu(x);             // all ≥ 0: zero point 0, the range from the maximum alone
        if (variant == 2) x = add(x, scalar_tensor(1.5));  // mostly positive: a zero point off the middle
        const int64_t m = M, n = N, k = K;                 // named copies: clang cannot CAPTURE a structured binding
        CAPTURE(m);
        CAPTURE(n);
        CAPTURE(k);
        CAPTURE(per_channel);
        CAPTURE(variant);
        const Tensor b = with_bias ? bias : Tensor();
        const Tensor want = quantized_linear(x, cpu_weight, b, relu ? Activation::relu : Activation::none);
        const Tensor got = emulated_int8_linear(x, rows, b, relu, M * K > 256 ? 3 : 1);
        CHECK(got.to_vector<float>() == want.to_vector<float>());
      }
    }
  }
}

TEST_CASE("the CUDA int8 layer on the host emulator: a NaN or an infinity makes every output NaN (the CPU throws)") {
  // The GPU does not stop to ask: that would wait for it in every layer.
  Generator gen(22);
  const QuantizedWeight q = quantize_weight_int8(randn({6, 9}, {}, gen));
  const Int8Weight rows = pack_int8_weight_rows(q.values, q.scale);
  for (double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    Tensor x = randn({40, 9}, {}, gen);
    x.narrow(0, 37, 1).narrow(1, 4, 1).fill_(bad);  // element 337: the second of 3 partial ranges (the third is empty)
    CHECK_THROWS_WITH(quantized_linear(x, pack_int8_weight(q.values, q.scale)), doctest::Contains("NaN or infinity"));
    for (float v : emulated_int8_linear(x, rows, Tensor(), true, 3).to_vector<float>()) CHECK(std::isnan(v));
  }
}

namespace {
// cuda/bf16_kernels.cuh's hand-written layer on the emulator: y f32, or bf16 when `out` is.
Tensor emulated_bf16_linear(const Tensor& x, const Tensor& w, const Tensor& bias, bool relu, DType out) {
  namespace bk = minidl::cuda::bf16_kernels;
  const int64_t M = x.size(0), N = w.size(0), K = x.size(1);
  Tensor y = poisoned({M, N}, out);
  const dim3 grid{static_cast<unsigned>((N + bk::kBTile - 1) / bk::kBTile),
                  static_cast<unsigned>((M + bk::kBTile - 1) / bk::kBTile), 1};
  minidl::testing::emulate(grid, {bk::kBSide, bk::kBSide, 1}, [&] {
    bk::bf16_linear_kernel(
        x.data_ptr<bf16>(), w.data_ptr<bf16>(), M, N, K, bias.defined() ? bias.data_ptr<float>() : nullptr, relu,
        out == DType::f32 ? y.data_ptr<float>() : nullptr, out == DType::bf16 ? y.data_ptr<bf16>() : nullptr, N);
  });
  return y;
}

std::vector<uint16_t> bf16_bits(const Tensor& t) {
  const Tensor c = t.contiguous();
  const auto* p = c.data_ptr<bf16>();
  std::vector<uint16_t> bits(static_cast<size_t>(c.numel()));
  for (size_t i = 0; i < bits.size(); ++i) bits[i] = p[i].bits;
  return bits;
}
}  // namespace

TEST_CASE(
    "the CUDA bf16 layer on the host emulator: f32 sums to rounding, bf16 rounded once, tails, cuBLAS's epilogue") {
  namespace bk = minidl::cuda::bf16_kernels;
  Generator gen(23);
  // (M, N, K): one sample; tails in every dimension (K short of one 16-step, N and
  // M past a 64 tile); K over several steps; exact tiles.
  for (const auto& [M, N, K] :
       std::vector<std::array<int64_t, 3>>{{1, 10, 7}, {5, 70, 33}, {65, 3, 130}, {64, 64, 64}, {70, 129, 17}}) {
    const Tensor x = randn({M, K}, {}, gen).to(DType::bf16), w = randn({N, K}, {}, gen).to(DType::bf16);
    const Tensor bias = randn({N}, {}, gen);
    const Tensor sums = emulated_bf16_linear(x, w, Tensor(), false, DType::f32);  // as cuBLAS would leave them
    for (int variant = 0; variant < 3; ++variant) {
      const bool relu = variant != 1, with_bias = variant != 2;
      const int64_t m = M, n = N, k = K;  // named copies: clang cannot CAPTURE a structured binding
      CAPTURE(m);
      CAPTURE(n);
      CAPTURE(k);
      CAPTURE(variant);
      const Tensor b = with_bias ? bias : Tensor();
      // The exact answer: bf16 products are exact, so f64 from the same bf16 values differs only by the f32 sums.
      Tensor want = matmul(x.to(DType::f64), w.to(DType::f64).t());
      if (with_bias) want = add(want, b.to(DType::f64));
      if (relu) want = minidl::relu(want);
      const Tensor got32 = emulated_bf16_linear(x, w, b, relu, DType::f32);
      CHECK(worst(got32, want) <= 2e-6);
      // bf16 out: the same f32 values, rounded once (to nearest even).
      const Tensor got16 = emulated_bf16_linear(x, w, b, relu, DType::bf16);
      CHECK(bf16_bits(got16) == bf16_bits(got32.to(DType::bf16)));
      // The CPU's bf16 layer sums in another order: equal to rounding.
      const Tensor cpu = linear_bf16(x, pack_bf16_weight(w), b, relu ? Activation::relu : Activation::none);
      CHECK(worst(got16, cpu) <= 1.0 / 128);
      // cuBLAS's path: plain sums, then epilogue_kernel, must give the fused kernel's bits.
      Tensor after = poisoned({M, N}, DType::bf16);
      minidl::testing::emulate({2, 1, 1}, {256, 1, 1}, [&] {
        bk::epilogue_kernel(sums.data_ptr<float>(), m, n, with_bias ? b.data_ptr<float>() : nullptr, relu, nullptr,
                            after.data_ptr<bf16>(), n);
      });
      CHECK(bf16_bits(after) == bf16_bits(got16));
    }
  }
}
