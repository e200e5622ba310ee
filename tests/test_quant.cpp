// tests/test_quant.cpp — int8 dynamic quantization: every int8 GEMM kernel this
// CPU runs against the reference (bit for bit: the integer part is exact) and
// the reference against an f64 product of the dequantized operands; the
// activation and weight quantizers' rounding bounds; QuantLinear against Linear;
// quantize_dynamic on a model, its checkpoint round trip, and the refusals.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>

#include "compress/quantize.h"
#include "minidl.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"
#include "ops/quant.h"
#include "temp_dir.h"

using namespace minidl;
using cpu::QGemmKernel;
using minidl::testing::TempDir;

namespace {

const QGemmKernel kKernels[] = {QGemmKernel::reference, QGemmKernel::avx2, QGemmKernel::avx_vnni,
                                QGemmKernel::avx512_vnni, QGemmKernel::amx};

// A random int8 GEMM problem: x u8 (M, Kp), W int8 (N, K) in [−127, 127].
struct Problem {
  int64_t M, N, K;
  std::vector<uint8_t> x;
  std::vector<int8_t> w, packed;
  std::vector<int32_t> row_sums;
  std::vector<float> w_scale, bias;
  cpu::QGemmArgs args(float* y, bool relu, bool with_bias, int32_t zero_point = 37) const {
    cpu::QGemmArgs a;
    a.M = M, a.N = N, a.K = K;
    a.x = x.data(), a.ldx = cpu::qgemm_padded_k(K), a.x_scale = 0.02f, a.x_zero_point = zero_point;
    a.w_packed = packed.data(), a.w_row_sums = row_sums.data(), a.w_scale = w_scale.data();
    a.bias = with_bias ? bias.data() : nullptr, a.relu = relu;
    a.y = y, a.ldy = N;
    return a;
  }
};

// fill: 0 random, 1 the extremes (x = 255, w = ±127: the 16-bit saturation trap), 2 alternating 0/255 against ±127.
Problem make_problem(int64_t M, int64_t N, int64_t K, uint64_t seed, int fill = 0) {
  std::mt19937_64 rng(seed);
  Problem p{M, N, K, {}, {}, {}, {}, {}, {}};
  const int64_t Kp = cpu::qgemm_padded_k(K);
  p.x.assign(static_cast<size_t>(M * Kp), 0);
  p.w.resize(static_cast<size_t>(N * K));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k)
      p.x[m * Kp + k] = fill == 1 ? 255 : fill == 2 ? ((m + k) % 2 ? 255 : 0) : static_cast<uint8_t>(rng() % 256);
  for (int64_t i = 0; i < N * K; ++i)
    p.w[i] = fill == 1   ? 127
             : fill == 2 ? (i % 3 ? 127 : -127)
                         : static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
  p.packed.resize(static_cast<size_t>(cpu::qgemm_packed_bytes(N, K)));
  p.row_sums.resize(static_cast<size_t>(N));
  cpu::qgemm_pack_weight(p.w.data(), N, K, p.packed.data(), p.row_sums.data());
  std::uniform_real_distribution<float> u(0.5f, 2.0f), b(-3.0f, 3.0f);
  for (int64_t n = 0; n < N; ++n) p.w_scale.push_back(u(rng) * 1e-2f), p.bias.push_back(b(rng));
  return p;
}

// The result in f64 from the unpacked operands.
double expected(const Problem& p, const cpu::QGemmArgs& a, int64_t m, int64_t n) {
  int64_t acc = 0;
  const int64_t Kp = cpu::qgemm_padded_k(p.K);
  for (int64_t k = 0; k < p.K; ++k) acc += int64_t{p.x[m * Kp + k]} * p.w[n * p.K + k];
  double v = static_cast<double>(a.x_scale) * p.w_scale[n] *
             static_cast<double>(acc - int64_t{a.x_zero_point} * p.row_sums[n]);
  if (a.bias) v += p.bias[n];
  return a.relu ? std::max(v, 0.0) : v;
}

}  // namespace

TEST_CASE("qgemm: every kernel this CPU runs equals the reference bit for bit, and the reference the f64 product") {
  MESSAGE("CPU: " << cpu::cpu_summary());
  for (QGemmKernel k : kKernels)
    if (!cpu::qgemm_kernel_supported(k))
      MESSAGE("skipped " << std::string(cpu::qgemm_kernel_name(k)) << ": this CPU lacks it");
  const int64_t shapes[][3] = {{1, 1, 1},
                               {1, 10, 784},
                               {2, 17, 5},
                               {3, 33, 31},
                               {5, 64, 64},
                               {6, 16, 4},
                               {7, 130, 3},
                               {13, 47, 257},
                               {128, 256, 512},
                               {1, 512, 784},
                               {64, 10, 256},
                               // AMX: whole 16-row blocks, a K tail past the 64-byte chunks, rows left over
                               {16, 16, 64},
                               {32, 40, 1000},
                               {35, 100, 784},
                               {49, 33, 130},
                               {80, 70, 63}};
  uint64_t seed = 1;
  for (const auto& s : shapes)
    for (int fill : {0, 1, 2})
      for (bool relu : {false, true}) {
        const Problem p = make_problem(s[0], s[1], s[2], seed++, fill);
        std::vector<float> ref(static_cast<size_t>(p.M * p.N), std::nanf(""));
        const auto ra = p.args(ref.data(), relu, !relu);
        cpu::qgemm(ra, QGemmKernel::reference);
        for (int64_t m = 0; m < p.M; ++m)
          for (int64_t n = 0; n < p.N; ++n) {
            const double e = expected(p, ra, m, n);
            REQUIRE(std::abs(ref[m * p.N + n] - e) <= 2e-6 * std::abs(e) + 1e-6);
          }
        for (QGemmKernel k : kKernels) {
          if (!cpu::qgemm_kernel_supported(k) || k == QGemmKernel::reference) continue;
          CAPTURE(cpu::qgemm_kernel_name(k));
          const int64_t M = s[0], N = s[1], K = s[2];
          CAPTURE(M);
          CAPTURE(N);
          CAPTURE(K);
          CAPTURE(fill);
          CAPTURE(relu);
          std::vector<float> y(p.M * p.N, std::nanf(""));  // poisoned: an element left unwritten fails
          cpu::qgemm(p.args(y.data(), relu, !relu), k);
          int diff = 0;
          for (size_t i = 0; i < y.size(); ++i) diff += !(y[i] == ref[i]);
          CHECK(diff == 0);
        }
      }
}

TEST_CASE("qgemm: the output's row stride is honoured (a column block of a wider tensor)") {
  const int64_t M = 37;  // two AMX row blocks and 5 rows left over
  const Problem p = make_problem(M, 20, 70, 99);
  for (QGemmKernel k : kKernels) {
    if (!cpu::qgemm_kernel_supported(k)) continue;
    CAPTURE(cpu::qgemm_kernel_name(k));
    std::vector<float> wide(M * 31, -7.0f), ref(M * 20);
    auto a = p.args(wide.data(), false, true);
    a.ldy = 31;
    cpu::qgemm(a, k);
    cpu::qgemm(p.args(ref.data(), false, true), QGemmKernel::reference);
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < 20; ++n) CHECK(wide[m * 31 + n] == ref[m * 20 + n]);
      for (int64_t n = 20; n < 31; ++n) CHECK(wide[m * 31 + n] == -7.0f);  // untouched beyond N
    }
  }
}

TEST_CASE("qgemm on a row grid (an implicit convolution's rows) equals the same rows gathered, on every kernel") {
  // Row (b, r, c) of 3 blocks × 3 rows × 5 columns starts at b·700 + r·200 + c·12
  // and its K is 3 runs of 8 bytes, 50 apart: rows overlap, as patches do, and
  // 6-row tiles wrap past a line's end and a block's.
  const int64_t cols = 5, rows = 3, blocks = 3, M = cols * rows * blocks, segments = 3, run = 8, K = segments * run;
  const int64_t ldx = 12, segment_stride = 50, row_stride = 200, block_stride = 700;
  std::mt19937_64 rng(7);
  std::vector<uint8_t> image(static_cast<size_t>(blocks * block_stride));
  for (auto& v : image) v = static_cast<uint8_t>(rng() % 256);
  Problem p = make_problem(M, 37, K, 8);
  for (int64_t m = 0; m < M; ++m) {  // the same rows, gathered
    const int64_t c = m % cols, r = m / cols % rows, b = m / cols / rows;
    for (int64_t s = 0; s < segments; ++s)
      for (int64_t j = 0; j < run; ++j)
        p.x[m * K + s * run + j] = image[b * block_stride + r * row_stride + c * ldx + s * segment_stride + j];
  }
  std::vector<float> want(M * 37);
  cpu::qgemm(p.args(want.data(), true, true), QGemmKernel::reference);
  for (QGemmKernel k : kKernels) {
    if (!cpu::qgemm_kernel_supported(k)) continue;
    CAPTURE(cpu::qgemm_kernel_name(k));
    std::vector<float> y(M * 37, std::nanf(""));
    cpu::QGemmArgs a = p.args(y.data(), true, true);
    a.x = image.data(), a.ldx = ldx;
    a.x_grid = {cols, rows, row_stride, block_stride, segments, segment_stride};
    if (!cpu::qgemm_reads_grid(k)) {
      CHECK_THROWS_WITH_AS(cpu::qgemm(a, k), doctest::Contains("not on a grid"), Error);
      continue;
    }
    cpu::qgemm(a, k);
    CHECK(y == want);
    a.x_grid.segments = 4;  // runs of 6 bytes: not whole groups of 4
    CHECK_THROWS_WITH_AS(cpu::qgemm(a, k), doctest::Contains("runs of K = 24 a multiple of 4"), Error);
  }
}

TEST_CASE("activation quantization: range holds 0, each value within half a step, vector path = scalar path") {
  Generator gen(3);
  struct Case {
    const char* name;
    Tensor x;
    int32_t zero;  // expected zero point, or -1 for "anywhere inside"
  };
  const Case cases[] = {{"mixed", randn({7, 45}, {}, gen), -1},
                        {"non-negative (after a ReLU)", relu(randn({3, 100}, {}, gen)), 0},
                        {"non-positive", neg(rand({2, 33}, {}, gen)) - 0.1, 255}};
  for (const auto& c : cases) {
    CAPTURE(c.name);
    const int64_t M = c.x.size(0), K = c.x.size(1), Kp = cpu::qgemm_padded_k(K);
    const auto xv = c.x.contiguous().to_vector<float>();
    const cpu::QuantParams q = cpu::choose_quant_params(xv.data(), M, K, K);
    CHECK(q.scale > 0);
    if (c.zero >= 0) CHECK(q.zero_point == c.zero);
    std::vector<uint8_t> fast(M * Kp, 1), slow(M * Kp, 2);
    cpu::quantize_rows_u8(xv.data(), M, K, K, q, fast.data(), Kp);
    {
      cpu::ScopedCpuPath scalar(cpu::CpuPath::avx2);  // below avx512: the scalar loop
      cpu::quantize_rows_u8(xv.data(), M, K, K, q, slow.data(), Kp);
    }
    CHECK(fast == slow);
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t k = 0; k < K; ++k) {
        const double back = q.scale * (static_cast<double>(fast[m * Kp + k]) - q.zero_point);
        CHECK(std::abs(back - xv[m * K + k]) <= 0.5 * q.scale * (1 + 1e-5));
      }
      for (int64_t k = K; k < Kp; ++k) CHECK(fast[m * Kp + k] == q.zero_point);
    }
  }
  const float zeros4[4] = {0, 0, 0, 0};
  const cpu::QuantParams z = cpu::choose_quant_params(zeros4, 1, 4, 4);
  CHECK(z.scale == 1.0f);
  CHECK(z.zero_point == 0);
  const float bad[3] = {1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f};
  CHECK_THROWS_WITH_AS(cpu::choose_quant_params(bad, 1, 3, 3), doctest::Contains("NaN or infinity"), Error);
  const float inf[2] = {1.0f, std::numeric_limits<float>::infinity()};
  CHECK_THROWS_AS(cpu::choose_quant_params(inf, 1, 2, 2), Error);
}

TEST_CASE("weight quantization: symmetric, per channel or per tensor, within half a step") {
  Generator gen(5);
  Tensor w = randn({6, 37}, {}, gen);
  w.select(0, 2).fill_(0.0);  // an all-zero row
  for (bool per_channel : {true, false}) {
    CAPTURE(per_channel);
    const QuantizedWeight q = quantize_weight_int8(w, per_channel);
    REQUIRE(q.values.dtype() == DType::int8);
    REQUIRE(q.scale.shape() == Shape{per_channel ? 6 : 1});
    const auto v = q.values.to_vector<int8_t>();
    const auto s = q.scale.to_vector<float>();
    const auto wv = w.to_vector<float>();
    for (int64_t r = 0; r < 6; ++r) {
      const float sc = s[per_channel ? r : 0];
      int peak = 0;
      for (int64_t k = 0; k < 37; ++k) {
        CHECK(std::abs(sc * v[r * 37 + k] - wv[r * 37 + k]) <= 0.5f * sc * (1 + 1e-5f));
        peak = std::max(peak, std::abs(int{v[r * 37 + k]}));
      }
      if (per_channel) CHECK(peak == (r == 2 ? 0 : 127));  // every non-zero row uses the full range
    }
    if (per_channel) CHECK(s[2] == 1.0f);
    CHECK(sqnr_db(w, dequantize_weight(q.values, q.scale)) > 35);
  }
}

TEST_CASE("quantized_linear: equals the f64 product of its dequantized operands; near the f32 linear") {
  Generator gen(7);
  for (int64_t batch : {1, 5, 64}) {
    CAPTURE(batch);
    Tensor x = randn({batch, 50}, {}, gen), w = randn({23, 50}, {}, gen) * 0.1, b = randn({23}, {}, gen);
    const QuantizedWeight q = quantize_weight_int8(w);
    const Int8Weight packed = pack_int8_weight(q.values, q.scale);
    Tensor y = quantized_linear(x, packed, b);
    // The same arithmetic by hand: x quantized as the op does, then f64.
    const auto xv = x.to_vector<float>();
    const cpu::QuantParams qp = cpu::choose_quant_params(xv.data(), batch, 50, 50);
    std::vector<uint8_t> xq(batch * 52);
    cpu::quantize_rows_u8(xv.data(), batch, 50, 50, qp, xq.data(), 52);
    const auto wd = dequantize_weight(q.values, q.scale).to(DType::f64).to_vector<double>();
    const auto yv = y.to_vector<float>(), bv = b.to_vector<float>();
    for (int64_t m = 0; m < batch; ++m)
      for (int64_t n = 0; n < 23; ++n) {
        double e = bv[n];
        for (int64_t k = 0; k < 50; ++k) e += qp.scale * (double(xq[m * 52 + k]) - qp.zero_point) * wd[n * 50 + k];
        CHECK(yv[m * 23 + n] == doctest::Approx(e).epsilon(1e-5).scale(10));
      }
    CHECK(sqnr_db(linear(x, w, b), y) > 30);
    // Fused ReLU = ReLU of the output; a 3-D input keeps its leading dims.
    CHECK(quantized_linear(x, packed, b, Activation::relu).to_vector<float>() == relu(y).to_vector<float>());
    CHECK(quantized_linear(x.reshape({batch, 1, 50}), packed, b).shape() == Shape{batch, 1, 23});
  }
}

TEST_CASE("quantized_linear and the int8 weight refuse bad input, naming it") {
  Generator gen(8);
  const QuantizedWeight q = quantize_weight_int8(randn({4, 6}, {}, gen));
  const Int8Weight w = pack_int8_weight(q.values, q.scale);
  CHECK_THROWS_WITH_AS(quantized_linear(randn({2, 5}, {}, gen), w), doctest::Contains("has 5 features"), Error);
  CHECK_THROWS_WITH_AS(quantized_linear(randn({2, 6}, {.requires_grad = true}, gen), w),
                       doctest::Contains("no gradient"), Error);
  CHECK_THROWS_WITH_AS(quantized_linear(randn({2, 6}, {.dtype = DType::f64}, gen), w), doctest::Contains("f32"), Error);
  CHECK_THROWS_WITH_AS(quantized_linear(randn({2, 6}, {}, gen), w, zeros({3})), doctest::Contains("bias"), Error);
  Tensor minus128 = q.values.clone();
  minus128.data_ptr<int8_t>()[7] = -128;
  CHECK_THROWS_WITH_AS(pack_int8_weight(minus128, q.scale), doctest::Contains("-128 at row 1, column 1"), Error);
  Tensor zero_scale = q.scale.clone();
  zero_scale.data_ptr<float>()[2] = 0.0f;
  CHECK_THROWS_WITH_AS(pack_int8_weight(q.values, zero_scale), doctest::Contains("of row 2"), Error);
  Tensor nan_scale = q.scale.clone();
  nan_scale.data_ptr<float>()[0] = std::nanf("");
  CHECK_THROWS_AS(pack_int8_weight(q.values, nan_scale), Error);
  CHECK_THROWS_WITH_AS(pack_int8_weight(q.values, ones({3})), doctest::Contains("per channel"), Error);
  CHECK_THROWS_WITH_AS(pack_int8_weight(q.values.to(DType::f32), q.scale), doctest::Contains("int8 (out, in)"), Error);
}

TEST_CASE("quantize_dynamic: every Linear becomes a QuantLinear; per-layer report; checkpoint round trip") {
  TempDir dir;
  Generator gen(11);
  auto model = nn::make<nn::Sequential>(
      std::vector<nn::ModulePtr>{nn::make<nn::Flatten>(), nn::make<nn::Linear>(64, 32, true, gen), nn::make<nn::ReLU>(),
                                 nn::make<nn::Linear>(32, 10, true, gen)});
  model->eval();
  Tensor x = randn({16, 1, 8, 8}, {}, gen);
  Tensor y32;
  {
    NoGradGuard no_grad;
    y32 = model->forward(x);
  }
  model->train();
  CHECK_THROWS_WITH_AS(compress::quantize_dynamic(*model), doctest::Contains("training mode"), Error);
  model->eval();
  const auto report = compress::quantize_dynamic(*model, {.calibration = x});
  REQUIRE(report.size() == 2);
  CHECK(report[0].path == "1");
  CHECK(report[1].path == "3");
  for (const auto& r : report) {
    CHECK(r.output_sqnr_db > 25);
    CHECK(r.weight_sqnr_db > 35);
    CHECK(r.scale_min > 0);
    CHECK(r.scale_max >= r.scale_min);
    CHECK(r.int8_bytes * 3 < r.f32_bytes);
  }
  CHECK(compress::is_quantized(*model));
  CHECK(model->str().find("QuantLinear") != std::string::npos);
  Tensor y8;
  {
    NoGradGuard no_grad;
    y8 = model->forward(x);
  }
  CHECK(sqnr_db(y32, y8) > 25);
  CHECK_THROWS_WITH_AS(compress::quantize_dynamic(*model), doctest::Contains("already quantized"), Error);

  // Saved and read back: the same layers, the same outputs.
  const std::string path = dir / "q.safetensors";
  nn::save_model(path, *model, {{"quantization", "int8-dynamic"}});
  nn::ModulePtr back = nn::load_model(path);
  back->eval();
  CHECK(compress::is_quantized(*back));
  NoGradGuard no_grad;
  CHECK(back->forward(x).to_vector<float>() == y8.to_vector<float>());

  // A corrupt int8 checkpoint: a scale of zero, caught when the layer is packed.
  auto file = nn::load_safetensors(path);
  file.tensors["1.weight_scale"].data_ptr<float>()[3] = 0.0f;
  const std::string bad = dir / "bad.safetensors";
  nn::save_safetensors(bad, file.tensors, file.metadata);
  CHECK_THROWS_WITH_AS(nn::load_model(bad), doctest::Contains("scale 0 of row 3"), Error);

  auto convs = nn::make<nn::Sequential>(std::vector<nn::ModulePtr>{nn::make<nn::Conv2d>(1, 2, 3)});
  convs->eval();
  CHECK_THROWS_WITH_AS(compress::quantize_dynamic(*convs), doctest::Contains("no Linear"), Error);
}

namespace {
// The int8 convolution's arithmetic by hand: x quantized as the op does (its
// range over the whole input), the dequantized weight, the sum in f64.
std::vector<double> qconv_by_hand(const Tensor& x, const QuantizedWeight& q, const Tensor& bias, const Conv2dOptions& o,
                                  bool relu, const Shape& y_shape) {
  const auto xv = x.to_vector<float>();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = q.values.size(0), kh = q.values.size(2), kw = q.values.size(3);
  const int64_t Ho = y_shape[2], Wo = y_shape[3];
  const cpu::QuantParams qp = cpu::choose_quant_params(xv.data(), N * C, H * W, H * W);
  auto xd = [&](int64_t n, int64_t c, int64_t h, int64_t w) {  // 0 in the padding, exactly
    if (h < 0 || h >= H || w < 0 || w >= W) return 0.0;
    const int32_t level = quantize_u8(xv[((n * C + c) * H + h) * W + w], 1.0f / qp.scale, qp.zero_point);
    return double(qp.scale) * (level - qp.zero_point);
  };
  const auto wd = dequantize_weight(q.values, q.scale).to(DType::f64).to_vector<double>();
  const auto bv = bias.defined() ? bias.to(DType::f64).to_vector<double>() : std::vector<double>(O);
  std::vector<double> y(static_cast<size_t>(N * O * Ho * Wo));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oc = 0; oc < O; ++oc)
      for (int64_t oh = 0; oh < Ho; ++oh)
        for (int64_t ow = 0; ow < Wo; ++ow) {
          double e = bv[oc];
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < kh; ++i)
              for (int64_t j = 0; j < kw; ++j)
                e +=
                    wd[((oc * C + c) * kh + i) * kw + j] * xd(n, c, oh * o.stride[0] - o.padding[0] + i * o.dilation[0],
                                                              ow * o.stride[1] - o.padding[1] + j * o.dilation[1]);
          y[((n * O + oc) * Ho + oh) * Wo + ow] = relu ? std::max(e, 0.0) : e;
        }
  return y;
}
}  // namespace

TEST_CASE("quantized_conv2d: equals the f64 convolution of its dequantized operands; near the f32 conv2d") {
  struct Case {
    int64_t N, C, H, W, O, kh, kw;
    Conv2dOptions o;
    bool relu, bias;
  };
  const Case cases[] = {
      {2, 3, 9, 8, 5, 3, 3, {.padding = {1, 1}}, false, true},                       // "same", K = 27 (padded to 28)
      {5, 32, 7, 7, 64, 3, 3, {.padding = {1, 1}}, true, true},                      // the cnn's conv2, smaller
      {3, 4, 11, 10, 17, 3, 2, {.stride = {2, 3}, .padding = {1, 0}}, true, false},  // strides, a 3x2 kernel
      {2, 6, 9, 9, 7, 3, 3, {.padding = {2, 2}, .dilation = {2, 2}}, false, true},   // dilated
      {4, 16, 5, 6, 33, 1, 1, {}, false, true},                                      // 1x1, read in place
      {2, 6, 4, 5, 5, 1, 1, {}, true, false},                                        // 1x1, C not a multiple of 4
      {1, 1, 28, 28, 32, 3, 3, {.padding = {1, 1}}, true, true},                     // the cnn's conv1 at batch 1
      {3, 8, 12, 11, 24, 3, 3, {.stride = {2, 2}, .padding = {1, 1}}, true, true},   // a residual block's stride 2
      {2, 8, 9, 9, 16, 1, 1, {.stride = {2, 2}}, false, true},                       // its 1x1 shortcut
      {2, 4, 10, 9, 12, 3, 3, {.padding = {2, 1}, .dilation = {2, 1}}, true, true},  // runs 2 image rows apart
      {2, 2, 8, 8, 9, 2, 2, {.padding = {1, 1}}, false, true},                       // C = 2, kernel rows of 4 bytes
  };
  Generator gen(21);
  for (const Case& c : cases) {
    CAPTURE(c.C);
    CAPTURE(c.O);
    CAPTURE(c.kh);
    // randn: negative and positive inputs, so the zero point (the padding's level) is far from 0.
    Tensor x = randn({c.N, c.C, c.H, c.W}, {}, gen), w = randn({c.O, c.C, c.kh, c.kw}, {}, gen) * 0.2;
    Tensor b = c.bias ? randn({c.O}, {}, gen) : Tensor();
    const QuantizedWeight q = quantize_weight_int8(w);
    REQUIRE(q.values.shape() == w.shape());
    const Int8ConvWeight packed = pack_int8_conv_weight(q.values, q.scale);
    const Activation act = c.relu ? Activation::relu : Activation::none;
    const Tensor y = quantized_conv2d(x, packed, b, c.o, act);
    const Tensor y32 = conv2d(x, w, b, c.o, act);
    REQUIRE(y.shape() == y32.shape());
    const auto want = qconv_by_hand(x, q, b, c.o, c.relu, y.shape());
    const auto got = y.to_vector<float>();
    double worst = 0, peak = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      worst = std::isnan(got[i]) ? INFINITY : std::max(worst, std::abs(got[i] - want[i]));
      peak = std::max(peak, std::abs(want[i]));
    }
    CHECK(worst <= 1e-5 * peak);
    CHECK(sqnr_db(y32, y) > 30);

    // Every kernel, the patches read in place (where the shape allows) or
    // gathered, x and y each stored channels first or channels last: the same
    // integer sums, so the op's result bit for bit.
    const Tensor x_nhwc = x.permute({0, 2, 3, 1}).contiguous();
    for (QGemmKernel k : kKernels)
      for (cpu::QConvPatches patches : {cpu::QConvPatches::best, cpu::QConvPatches::gathered})
        for (int layouts = 0; layouts < 4; ++layouts) {
          if (!cpu::qgemm_kernel_supported(k)) continue;
          const bool x_cl = layouts & 1, y_cl = layouts & 2;
          CAPTURE(cpu::qgemm_kernel_name(k));
          CAPTURE(patches == cpu::QConvPatches::gathered);
          CAPTURE(x_cl);
          CAPTURE(y_cl);
          // poisoned: every element must be written
          Tensor got = y_cl ? full({c.N, y.size(2), y.size(3), c.O}, std::nan("")) : full_like(y, std::nan(""));
          cpu::QConv2dArgs a;
          a.x = (x_cl ? x_nhwc : x).data_ptr<float>(), a.N = c.N, a.C = c.C, a.H = c.H, a.W = c.W;
          a.x_channels_last = x_cl, a.y_channels_last = y_cl;
          a.O = c.O, a.kernel_h = c.kh, a.kernel_w = c.kw;
          a.params = {c.o.stride[0], c.o.stride[1], c.o.padding[0], c.o.padding[1], c.o.dilation[0], c.o.dilation[1], 1,
                      c.relu};
          a.w_packed = packed.gemm.packed.data_ptr<int8_t>(), a.w_row_sums = packed.gemm.row_sums.data_ptr<int32_t>();
          a.w_scale = packed.gemm.scale.data_ptr<float>(), a.bias = c.bias ? b.data_ptr<float>() : nullptr;
          a.y = got.data_ptr<float>(), a.Hy = y.size(2), a.Wy = y.size(3);
          a.kernel = k, a.patches = patches;
          cpu::qconv2d(a);
          CHECK((y_cl ? got.permute({0, 3, 1, 2}) : got).to_vector<float>() == y.to_vector<float>());
        }
  }
}

TEST_CASE("quantized_conv2d's kernel with a max pool equals max_pool2d of its output, bit for bit") {
  Generator gen(22);
  Tensor x = randn({3, 8, 10, 9}, {}, gen), w = randn({20, 8, 3, 3}, {}, gen) * 0.2, b = randn({20}, {}, gen);
  const QuantizedWeight q = quantize_weight_int8(w);
  const Int8ConvWeight packed = pack_int8_conv_weight(q.values, q.scale);
  const Conv2dOptions o{.padding = {1, 1}};
  const Pool2dParams pools[] = {{2, 2, 2, 2, 0, 0}, {3, 3, 2, 2, 1, 1}, {3, 2, 1, 2, 0, 1}};
  for (bool relu : {false, true})
    for (const Pool2dParams& pool : pools) {
      CAPTURE(relu);
      CAPTURE(pool.kernel_h);
      const Tensor full = quantized_conv2d(x, packed, b, o, relu ? Activation::relu : Activation::none);
      const Tensor want =
          max_pool2d(full, {pool.kernel_h, pool.kernel_w}, {pool.stride_h, pool.stride_w}, {pool.pad_h, pool.pad_w});
      Tensor got = full_like(want, std::nan(""));  // poisoned: every element must be written
      cpu::QConv2dArgs a;
      a.x = x.data_ptr<float>(), a.N = 3, a.C = 8, a.H = 10, a.W = 9, a.O = 20, a.kernel_h = 3, a.kernel_w = 3;
      a.params = {1, 1, 1, 1, 1, 1, 1, relu};
      a.w_packed = packed.gemm.packed.data_ptr<int8_t>(), a.w_row_sums = packed.gemm.row_sums.data_ptr<int32_t>();
      a.w_scale = packed.gemm.scale.data_ptr<float>(), a.bias = b.data_ptr<float>(), a.max_pool = &pool;
      a.y = got.data_ptr<float>(), a.Hy = want.size(2), a.Wy = want.size(3);
      cpu::qconv2d(a);
      CHECK(got.to_vector<float>() == want.to_vector<float>());
      // The pooled output stored channels last (N, Hy, Wy, O), from an input stored so too.
      const Tensor x_nhwc = x.permute({0, 2, 3, 1}).contiguous();
      Tensor got_cl = minidl::full({3, want.size(2), want.size(3), 20}, std::nan(""));
      a.x = x_nhwc.data_ptr<float>(), a.x_channels_last = true;
      a.y = got_cl.data_ptr<float>(), a.y_channels_last = true;
      cpu::qconv2d(a);
      CHECK(got_cl.permute({0, 3, 1, 2}).to_vector<float>() == want.to_vector<float>());
      a.Hy += 1;  // not the pooled size
      CHECK_THROWS_WITH_AS(cpu::qconv2d(a), doctest::Contains("is not the 10x9 convolution pooled"), Error);
    }
}

TEST_CASE("quantized_conv2d and the int8 conv weight refuse bad input, naming it") {
  Generator gen(23);
  const QuantizedWeight q = quantize_weight_int8(randn({4, 3, 3, 3}, {}, gen));
  const Int8ConvWeight w = pack_int8_conv_weight(q.values, q.scale);
  CHECK_THROWS_WITH_AS(quantized_conv2d(randn({2, 5, 8, 8}, {}, gen), w),
                       doctest::Contains("has 5 channels but weight [4, 3, 3, 3]"), Error);
  CHECK_THROWS_WITH_AS(quantized_conv2d(randn({2, 3, 8}, {}, gen), w), doctest::Contains("must be 4-D"), Error);
  CHECK_THROWS_WITH_AS(quantized_conv2d(randn({2, 3, 2, 2}, {}, gen), w), doctest::Contains("smaller than"), Error);
  CHECK_THROWS_WITH_AS(quantized_conv2d(randn({2, 3, 8, 8}, {.requires_grad = true}, gen), w),
                       doctest::Contains("no gradient"), Error);
  CHECK_THROWS_WITH_AS(quantized_conv2d(randn({2, 3, 8, 8}, {.dtype = DType::f64}, gen), w), doctest::Contains("f32"),
                       Error);
  CHECK_THROWS_WITH_AS(quantized_conv2d(randn({2, 3, 8, 8}, {}, gen), w, zeros({3})),
                       doctest::Contains("does not match 4 out channels"), Error);
  Tensor x = randn({2, 3, 8, 8}, {}, gen);
  x.data_ptr<float>()[17] = INFINITY;
  CHECK_THROWS_WITH_AS(quantized_conv2d(x, w), doctest::Contains("NaN or infinity"), Error);
  const QuantizedWeight grouped = quantize_weight_int8(randn({4, 3, 3, 3}, {}, gen));
  CHECK_THROWS_WITH_AS(quantized_conv2d(randn({2, 6, 8, 8}, {}, gen),
                                        pack_int8_conv_weight(grouped.values, grouped.scale), Tensor(), {.groups = 2}),
                       doctest::Contains("groups"), Error);
  CHECK_THROWS_WITH_AS(pack_int8_conv_weight(q.values.reshape({4, 27}), q.scale), doctest::Contains("(O, C, kh, kw)"),
                       Error);
  Tensor minus128 = q.values.clone();
  minus128.data_ptr<int8_t>()[5] = -128;
  CHECK_THROWS_WITH_AS(pack_int8_conv_weight(minus128, q.scale), doctest::Contains("-128"), Error);
  // The plan's entry point takes x and y contiguous or channels last, nothing else.
  const Conv2dParams p{1, 1, 0, 0, 1, 1, 1, false};
  const Tensor y = empty({2, 4, 6, 6});
  const Tensor swapped = randn({2, 8, 8, 3}, {}, gen).permute({0, 3, 2, 1});  // (N, C, W, H) memory
  CHECK_THROWS_WITH_AS(run_quantized_conv2d(y, swapped, w, Tensor(), p),
                       doctest::Contains("x [2, 3, 8, 8] with strides [192, 1, 3, 24] is neither contiguous nor "
                                         "channels last"),
                       Error);
  CHECK_THROWS_WITH_AS(
      run_quantized_conv2d(empty({2, 6, 4, 6}).transpose(1, 2), randn({2, 3, 8, 8}, {}, gen), w, Tensor(), p),
      doctest::Contains("quantized_conv2d: y [2, 4, 6, 6]"), Error);
}

TEST_CASE("quantize_dynamic with convolutions: int8 from a patch of kMinInt8ConvPatch = 36 values, not below") {
  static_assert(compress::kMinInt8ConvPatch == 36, "this test's layers sit on either side of 36");
  Generator gen(25);
  auto model = nn::make<nn::Sequential>(std::vector<nn::ModulePtr>{
      nn::make<nn::Conv2d>(4, 35, 3, Conv2dOptions{.padding = {1, 1}}, true, gen),         // 4·3·3 = 36: int8
      nn::make<nn::ReLU>(), nn::make<nn::Conv2d>(35, 8, 1, Conv2dOptions{}, true, gen)});  // 35·1·1: f32
  model->eval();
  compress::QuantizeOptions o;
  o.convolutions = true;
  const auto report = compress::quantize_dynamic(*model, o);
  REQUIRE(report.size() == 2);
  CHECK(report[0].path == "0");
  CHECK(report[0].kept_f32.empty());
  CHECK(report[1].path == "2");
  CHECK(report[1].kept_f32.find("a patch of 35 values") != std::string::npos);
  CHECK(model->str().find("QuantConv2d(4, 35") != std::string::npos);
}

TEST_CASE("quantize_dynamic with convolutions: QuantConv2d where the patch pays; report; checkpoint; no GPU") {
  TempDir dir;
  Generator gen(24);
  // conv1's patch (1·3·3 = 9) is below kMinInt8ConvPatch and stays f32; conv2's (16·3·3 = 144) and the Linear go int8.
  auto model = nn::make<nn::Sequential>(std::vector<nn::ModulePtr>{
      nn::make<nn::Conv2d>(1, 16, 3, Conv2dOptions{.padding = {1, 1}}, true, gen), nn::make<nn::ReLU>(),
      nn::make<nn::Conv2d>(16, 16, 3, Conv2dOptions{.stride = {2, 2}, .padding = {1, 1}}, true, gen),
      nn::make<nn::ReLU>(), nn::make<nn::MaxPool2d>(2), nn::make<nn::Flatten>(),
      nn::make<nn::Linear>(16 * 4 * 4, 10, true, gen)});
  model->eval();
  const Tensor x = randn({6, 1, 16, 16}, {}, gen);
  Tensor y32;
  {
    NoGradGuard no_grad;
    y32 = model->forward(x);
  }
  compress::QuantizeOptions o;
  o.convolutions = true, o.calibration = x;
  const auto report = compress::quantize_dynamic(*model, o);
  REQUIRE(report.size() == 3);
  CHECK(report[0].path == "2");
  CHECK(report[0].kept_f32.empty());
  CHECK(report[0].output_sqnr_db > 30);
  CHECK(report[0].weight_sqnr_db > 35);
  CHECK(report[0].int8_bytes * 3 < report[0].f32_bytes);
  CHECK(report[1].path == "6");
  CHECK(report[2].path == "0");
  CHECK(report[2].kept_f32.find("a patch of 9 values") != std::string::npos);
  CHECK(model->str().find("QuantConv2d(16, 16, kernel_size=3, stride=[2, 2]") != std::string::npos);
  CHECK(model->str().find("Conv2d(1, 16") != std::string::npos);
  CHECK(compress::is_quantized(*model));
  Tensor y8;
  {
    NoGradGuard no_grad;
    y8 = model->forward(x);
  }
  CHECK(sqnr_db(y32, y8) > 25);

  // Saved and read back: the same layers, the same outputs.
  const std::string path = dir / "qc.safetensors";
  nn::save_model(path, *model, {{"quantization", "int8-dynamic"}});
  nn::ModulePtr back = nn::load_model(path);
  back->eval();
  CHECK(back->str() == model->str());
  {
    NoGradGuard no_grad;
    CHECK(back->forward(x).to_vector<float>() == y8.to_vector<float>());
  }
  // A bad QuantConv2d spec is a clear error naming the key, as every layer's is.
  const nlohmann::json qspec = model->spec()["children"][2]["spec"];
  REQUIRE(qspec["type"] == "QuantConv2d");
  nlohmann::json bad_spec = qspec;
  bad_spec["kernel_size"] = 0;
  CHECK_THROWS_WITH_AS(nn::module_from_spec(bad_spec), doctest::Contains("'kernel_size' = 0 is outside [1, 64]"),
                       Error);
  bad_spec = qspec;
  bad_spec.erase("per_channel");
  CHECK_THROWS_WITH_AS(nn::module_from_spec(bad_spec), doctest::Contains("missing 'per_channel'"), Error);
  CHECK(nn::module_from_spec(qspec)->describe() == (*model)[2]->describe());

  // A corrupt weight: -128 is outside the symmetric range.
  auto file = nn::load_safetensors(path);
  file.tensors["2.weight"].data_ptr<int8_t>()[40] = -128;
  const std::string bad = dir / "bad.safetensors";
  nn::save_safetensors(bad, file.tensors, file.metadata);
  CHECK_THROWS_WITH_AS(nn::load_model(bad), doctest::Contains("-128"), Error);

  // No GPU int8 convolution: refused before anything moves, naming the layer.
  CHECK_THROWS_WITH_AS(model->to(Device("cuda")), doctest::Contains("QuantConv2d(16, 16"), Error);
  CHECK(back->str() == model->str());
  {
    NoGradGuard no_grad;
    CHECK(model->forward(x).to_vector<float>() == y8.to_vector<float>());  // still whole on the CPU
  }

  // Grouped convolutions stay f32; without a Linear or a conv that pays, nothing to quantize.
  auto grouped = nn::make<nn::Sequential>(
      std::vector<nn::ModulePtr>{nn::make<nn::Conv2d>(16, 16, 3, Conv2dOptions{.groups = 2}, true, gen)});
  grouped->eval();
  CHECK_THROWS_WITH_AS(compress::quantize_dynamic(*grouped, o), doctest::Contains("no Linear layer, nor a convolution"),
                       Error);
  CHECK_THROWS_AS(compress::QuantConv2d(dynamic_cast<nn::Conv2d&>(*(*grouped)[0])), Error);
}
