// tests/test_sparse.cpp — CSR/BSR formats and every sparse kernel against a dense
// f64 product: odd shapes, sparsities 0–100%, empty rows, a single non-zero,
// non-contiguous inputs, both index widths, batch 1 (SpMV) and wider.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <thread>

#include "compress/sparse.h"
#include "minidl.h"
#include "ops/cpu/cpu_features.h"

using namespace minidl;
using compress::IndexWidth;
using compress::SparseFormat;
using compress::SparseMatrix;

namespace {

// W (rows, cols): each r×c block is kept with probability 1 − sparsity, and in a
// kept block each value is zero with probability 1/4 (so BSR also stores zeros).
Tensor random_sparse(int64_t rows, int64_t cols, double sparsity, SparseFormat f, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<float> w(static_cast<size_t>(rows * cols), 0.0f);
  for (int64_t br = 0; br < rows / f.block_rows; ++br)
    for (int64_t bc = 0; bc < cols / f.block_cols; ++bc) {
      if (u(rng) < sparsity) continue;
      for (int64_t i = 0; i < f.block_rows; ++i)
        for (int64_t j = 0; j < f.block_cols; ++j)
          if (f.is_csr() || u(rng) >= 0.25)
            w[(br * f.block_rows + i) * cols + bc * f.block_cols + j] = value(rng);
    }
  return from_vector<float>(w, {rows, cols});
}

Tensor random_dense(int64_t rows, int64_t cols, uint64_t seed) {
  Generator gen(seed);
  return rand({rows, cols}, {}, gen) * 2.0 - 1.0;
}

// y64 = x · Wᵀ + b in f64, and the bound on the f32 result's rounding error.
void check_linear(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias, bool relu) {
  const int64_t N = x.size(0), K = x.size(1), O = w.size(0);
  REQUIRE(y.shape() == Shape{N, O});
  const auto xv = x.contiguous().to_vector<float>(), wv = w.contiguous().to_vector<float>();
  const auto yv = y.contiguous().to_vector<float>();
  const auto bv = bias.defined() ? bias.to_vector<float>() : std::vector<float>(static_cast<size_t>(O), 0.0f);
  int bad = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o) {
      double ref = bv[o], scale = std::abs(bv[o]);
      for (int64_t k = 0; k < K; ++k) {
        ref += static_cast<double>(xv[n * K + k]) * wv[o * K + k];
        scale += std::abs(static_cast<double>(xv[n * K + k]) * wv[o * K + k]);
      }
      if (relu) ref = std::max(ref, 0.0);
      if (std::abs(yv[n * O + o] - ref) > 1e-5 * scale + 1e-6 && bad++ < 3) {
        const double got = yv[n * O + o];
        const int64_t nn = n, oo = o;
        CAPTURE(nn);
        CAPTURE(oo);
        CHECK(got == doctest::Approx(ref));
      }
    }
  CHECK(bad == 0);
}

std::vector<cpu::SpmmKernel> kernels_for(const SparseMatrix& w) {
  std::vector<cpu::SpmmKernel> ks;
  for (auto k : {cpu::SpmmKernel::reference, cpu::SpmmKernel::avx2, cpu::SpmmKernel::avx512,
                 cpu::SpmmKernel::avx2_loads, cpu::SpmmKernel::avx512_loads, cpu::SpmmKernel::avx512_panels})
    if (cpu::spmm_kernel_supported(k, w.arg())) ks.push_back(k);
  return ks;
}

}  // namespace

TEST_CASE("formats: round trip, counts, bytes and index widths") {
  Tensor w = random_sparse(16, 24, 0.5, SparseFormat::csr(), 1);
  for (const SparseFormat& f : compress::sparse_formats()) {
    if (16 % f.block_rows != 0 || 24 % f.block_cols != 0) continue;
    const std::string name = f.name();
    CAPTURE(name);
    SparseMatrix m = SparseMatrix::from_dense(w, f);
    CHECK(m.to_dense().to_vector<float>() == w.to_vector<float>());
    CHECK(m.index16());  // 24 columns fit 16 bits
    CHECK(m.stored() >= m.nnz());
    CHECK(m.stored() == m.blocks() * f.block_rows * f.block_cols);
  }
  SparseMatrix csr = SparseMatrix::from_dense(w, SparseFormat::csr());
  const int64_t nnz = csr.nnz();
  const auto values = w.to_vector<float>();
  CHECK(nnz == std::count_if(values.begin(), values.end(), [](float v) { return v != 0.0f; }));
  CHECK(nnz > 0);
  CHECK(csr.bytes() == nnz * (4 + 2) + 17 * 4);
  SparseMatrix wide = SparseMatrix::from_dense(w, SparseFormat::csr(), IndexWidth::i32);
  CHECK_FALSE(wide.index16());
  CHECK(wide.bytes() == nnz * (4 + 4) + 17 * 4);
  CHECK(SparseFormat::parse("bsr4x4") == SparseFormat::bsr(4, 4));
  CHECK(SparseFormat::parse("csr").is_csr());
}

TEST_CASE("formats: bad input is refused with the reason") {
  Tensor w = random_sparse(10, 784, 0.5, SparseFormat::csr(), 2);
  CHECK_THROWS_WITH(SparseMatrix::from_dense(w, SparseFormat::bsr(4, 4), IndexWidth::automatic, "3.weight"),
                    doctest::Contains("3.weight [10, 784]: bsr4x4 blocks do not divide its shape (10 rows by 4"));
  CHECK_THROWS_WITH(SparseMatrix::from_dense(w, SparseFormat::bsr(3, 3)), doctest::Contains("no kernels for 3x3"));
  CHECK_THROWS_WITH(SparseFormat::parse("bsr5x5"), doctest::Contains("known: csr, bsr1x4"));
  CHECK_THROWS_WITH(SparseMatrix::from_dense(ones({4})), doctest::Contains("must be 2-D"));
  CHECK_THROWS_WITH(SparseMatrix::from_dense(ones({2, 70000}), SparseFormat::csr(), IndexWidth::i16),
                    doctest::Contains("at most 65536"));
  CHECK_FALSE(SparseMatrix::from_dense(ones({2, 70000})).index16());  // automatic: 32-bit
  SparseMatrix m = SparseMatrix::from_dense(w);
  CHECK_THROWS_WITH(compress::sparse_linear(ones({3, 783}), m), doctest::Contains("does not match weight (10, 784)"));
  Tensor x = ones({2, 784});
  x.requires_grad_();
  CHECK_THROWS_WITH(compress::sparse_linear(x, m), doctest::Contains("for inference"));
  CHECK_THROWS_WITH(compress::sparse_linear(ones({2, 784}, {.dtype = DType::f64}), m),
                    doctest::Contains("expected an f32 input"));
  // The GPU takes CSR only (refused before any device is touched), and to(cpu) is a copy.
  Tensor wb = random_sparse(16, 784, 0.5, SparseFormat::bsr(4, 4), 3);
  CHECK_THROWS_WITH(SparseMatrix::from_dense(wb, SparseFormat::bsr(4, 4)).to("cuda"),
                    doctest::Contains("the GPU kernels take CSR, this matrix is bsr4x4"));
  const SparseMatrix back = m.to(kCPU);
  CHECK(back.device() == kCPU);
  CHECK(sum(abs(sub(back.to_dense(), w))).item() == 0);
}

TEST_CASE("spmm: every kernel against dense f64 over sparsities, batches and odd shapes") {
  struct Case {
    int64_t rows, cols;
  };
  // Odd shapes for CSR; shapes every block divides for BSR.
  for (const SparseFormat& f : compress::sparse_formats()) {
    const Case shape = f.is_csr() ? Case{37, 53} : Case{48, 64};
    for (double sparsity : {0.0, 0.5, 0.9, 0.99, 1.0})
      for (IndexWidth width : {IndexWidth::i16, IndexWidth::i32}) {
        Tensor w = random_sparse(shape.rows, shape.cols, sparsity, f, 7 + static_cast<uint64_t>(sparsity * 100));
        SparseMatrix m = SparseMatrix::from_dense(w, f, width);
        Tensor bias = random_dense(1, shape.rows, 3).view({shape.rows});
        for (cpu::SpmmKernel k : kernels_for(m))
          for (int64_t batch : {1, 2, 3, 4, 5, 7, 8, 16, 17, 33, 64, 70, 131}) {
            const std::string name = f.name(), kernel = cpu::spmm_kernel_name(k, m.arg());
            const bool i16 = width == IndexWidth::i16;
            CAPTURE(name);
            CAPTURE(kernel);
            CAPTURE(sparsity);
            CAPTURE(batch);
            CAPTURE(i16);
            Tensor x = random_dense(batch, shape.cols, batch);
            check_linear(compress::sparse_linear(x, m, bias, Activation::none, k), x, w, bias, false);
            check_linear(compress::sparse_linear(x, m, bias, Activation::relu, k), x, w, bias, true);
          }
      }
  }
}

TEST_CASE("spmm: the panel layout is built once, on the first batch-1 product, and shared by copies") {
  Tensor w = random_sparse(70, 100, 0.8, SparseFormat::csr(), 21);
  SparseMatrix m = SparseMatrix::from_dense(w);
  CHECK(m.panel_bytes() == 0);
  CHECK(m.arg().panels == nullptr);
  if (!cpu::spmm_kernel_supported(cpu::SpmmKernel::avx512_panels, m.arg())) {
    MESSAGE("skipping: this CPU cannot run the avx512_panels kernel");
    return;
  }
  // A batch-1 product with avx512_panels and no layout is refused, not silently rerouted.
  Tensor column = random_dense(100, 1, 22);
  Tensor out = zeros({70, 1});
  CHECK_THROWS_WITH(cpu::spmm(m.arg(), column.arg(), out.arg(), {}, cpu::SpmmKernel::avx512_panels),
                    doctest::Contains("needs the matrix's panel layout"));
  const SparseMatrix copy = m;
  // Two threads ask for the layout at once; one builds it, both use it.
  Tensor x1 = random_dense(1, 100, 23), x2 = random_dense(1, 100, 24);
  Tensor y1, y2;
  std::thread t([&] { y1 = compress::sparse_linear(x1, m); });
  y2 = compress::sparse_linear(x2, copy);
  t.join();
  check_linear(y1, x1, w, Tensor(), false);
  check_linear(y2, x2, w, Tensor(), false);
  CHECK(m.panel_bytes() > 0);
  CHECK(copy.panel_bytes() == m.panel_bytes());
  const auto pays = compress::PanelRequest::if_it_pays;
  REQUIRE(m.arg(pays).panels != nullptr);
  CHECK(m.arg(pays).panels == copy.arg(pays).panels);
  // 5 slices × 4 panels of steps; each step has 16 values and 16 one-byte columns.
  const PanelMatrixArg& p = *m.arg(pays).panels;
  CHECK(p.slices == 5);
  CHECK(p.panels == 4);
  const int64_t steps = p.step_ptr[p.slices * p.panels];
  CHECK(steps * 16 >= m.nnz());
  CHECK(m.panel_bytes() == (p.slices * p.panels + 1) * 4 + steps * 16 * (4 + 1));
  CHECK(compress::sparse_linear_kernel_name() ==
        std::string("avx512 (64 columns; batch 1 by panels where they pay, else by ") +
            (cpu::cpu_features().vendor == "GenuineIntel" ? "gathers)" : "loads)"));
}

TEST_CASE("spmm: batch 1 runs from the panels only where they pay, unless asked for them") {
  using cpu::PanelPlan;
  // The cost model (ops/cpu/spmm.cpp): in L2, the work; beyond it, the bytes.
  const int64_t big = int64_t{1} << 40;  // beyond any machine's L2s
  CHECK(cpu::spmv_panels_pay(PanelPlan{.rows = 1024,
                                       .nnz = 314573,
                                       .csr_bytes = 1891538,
                                       .steps = 29370,
                                       .slice_panels = 2048,
                                       .panel_bytes = 1000000}));
  CHECK_FALSE(cpu::spmv_panels_pay(PanelPlan{
      .rows = 1024, .nnz = 41943, .csr_bytes = 250000, .steps = 12666, .slice_panels = 8192, .panel_bytes = 1000000}));
  CHECK(cpu::spmv_panels_pay(PanelPlan{.csr_bytes = big / 13 * 10, .panel_bytes = big}));      // 1.3× CSR's bytes
  CHECK_FALSE(cpu::spmv_panels_pay(PanelPlan{.csr_bytes = big / 3 * 2, .panel_bytes = big}));  // 1.5×

  // 16 rows, 99% sparse over 4096 columns: ~41 non-zeros a row, under two in
  // each 32-column panel, so a slice's panel is mostly padding.
  Tensor w = random_sparse(16, 4096, 0.99, SparseFormat::csr(), 31);
  SparseMatrix m = SparseMatrix::from_dense(w);
  if (!cpu::spmm_kernel_supported(cpu::SpmmKernel::avx512_panels, m.arg())) {
    MESSAGE("skipping: this CPU cannot run the avx512_panels kernel");
    return;
  }
  Tensor x = random_dense(1, 4096, 32);
  check_linear(compress::sparse_linear(x, m), x, w, Tensor(), false);
  CHECK(m.arg(compress::PanelRequest::if_it_pays).panels == nullptr);
  CHECK(m.panel_bytes() == 0);
  // The kernel that reads them builds them anyway, and `best` then uses them.
  check_linear(compress::sparse_linear(x, m, Tensor(), Activation::none, cpu::SpmmKernel::avx512_panels), x, w,
               Tensor(), false);
  CHECK(m.panel_bytes() > 0);
  CHECK(m.arg(compress::PanelRequest::if_it_pays).panels != nullptr);
  CHECK(std::string(cpu::spmm_kernel_name(cpu::SpmmKernel::best, m.arg(compress::PanelRequest::if_it_pays))) ==
        "avx512 (64 columns; batch 1 by panels)");
  // sparse_matmul at one column asks for them the same way.
  Tensor column = x.t();
  check_linear(compress::sparse_matmul(m, column).t(), x, w, Tensor(), false);
}

TEST_CASE("spmm: empty rows, a single non-zero, and non-contiguous inputs") {
  std::vector<float> v(40 * 33, 0.0f);
  v[17 * 33 + 32] = 2.5f;  // one non-zero, in the last column of row 17
  Tensor w = from_vector<float>(v, {40, 33});
  SparseMatrix m = SparseMatrix::from_dense(w);
  CHECK(m.nnz() == 1);
  for (cpu::SpmmKernel k : kernels_for(m))
    for (int64_t batch : {1, 2, 8, 9, 100}) {
      const std::string kernel = cpu::spmm_kernel_name(k, m.arg());
      CAPTURE(kernel);
      CAPTURE(batch);
      Tensor x = random_dense(batch, 33, 11);
      check_linear(compress::sparse_linear(x, m, Tensor(), Activation::none, k), x, w, Tensor(), false);
    }
  // x a transposed view, and a row of a wider matrix with a column stride.
  Tensor w2 = random_sparse(29, 41, 0.7, SparseFormat::csr(), 5);
  SparseMatrix m2 = SparseMatrix::from_dense(w2);
  Tensor wide = random_dense(41, 20, 12);
  check_linear(compress::sparse_linear(wide.t(), m2), wide.t(), w2, Tensor(), false);
  Tensor row = random_dense(3, 82, 13).slice(1, 0, 82, 2).narrow(0, 1, 1);  // (1, 41), stride 2
  REQUIRE_FALSE(row.is_contiguous());
  check_linear(compress::sparse_linear(row, m2), row, w2, Tensor(), false);
  // sparse_matmul: W · B with B non-contiguous.
  Tensor bt = random_dense(7, 41, 14).t();  // (41, 7)
  Tensor c = compress::sparse_matmul(m2, bt);
  check_linear(c.t(), bt.t(), w2, Tensor(), false);
}

TEST_CASE("sparse_conv2d equals conv2d with the dense weight") {
  Generator gen(21);
  for (auto [k, stride, pad] : {std::tuple{3, 1, 1}, std::tuple{3, 2, 0}, std::tuple{1, 1, 0}}) {
    const int64_t kk = k, ss = stride, pp = pad;
    CAPTURE(kk);
    CAPTURE(ss);
    CAPTURE(pp);
    Tensor w = random_sparse(12, 5 * k * k, 0.8, SparseFormat::csr(), 30 + k).view({12, 5, k, k});
    Tensor bias = random_dense(1, 12, 31).view({12});
    Tensor x = rand({3, 5, 9, 11}, {}, gen);
    const Conv2dOptions o{.stride = {stride, stride}, .padding = {pad, pad}};
    for (Activation act : {Activation::none, Activation::relu}) {
      Tensor dense = conv2d(x, w, bias, o, act);
      SparseMatrix m = SparseMatrix::from_dense(w.view({12, 5 * k * k}));
      Tensor sparse = compress::sparse_conv2d(x, m, bias, k, k, o, act);
      REQUIRE(sparse.shape() == dense.shape());
      CHECK(max(abs(sparse - dense)).item() < 1e-5);
    }
  }
}

TEST_CASE("to_sparse: a pruned model gives the same logits through sparse layers, and says what it chose") {
  Generator gen(5);
  auto model = nn::build_model("cnn", gen);
  model->eval();
  compress::Pruner pruner(*model);
  pruner.global_unstructured({"0.weight", "3.weight", "7.weight", "9.weight"}, compress::Amount::fraction(0.8));
  NoGradGuard no_grad;
  Tensor x = rand({4, 1, 28, 28}, {}, gen);
  const Tensor dense = model->forward(x);
  for (const std::string format : {"csr", "bsr4x4"}) {
    CAPTURE(format);
    auto copy = nn::build_model("cnn", gen);
    copy->load_state_dict(model->state_dict());
    copy->eval();
    const auto report = compress::to_sparse(*copy, SparseFormat::parse(format));
    REQUIRE(report.size() == 4);
    CHECK(max(abs(copy->forward(x) - dense)).item() < 1e-5);
    int sparse_layers = 0;
    for (const auto& [name, m] : copy->named_modules())
      sparse_layers += dynamic_cast<compress::SparseLinear*>(m.get()) || dynamic_cast<compress::SparseConv2d*>(m.get());
    if (format == "csr") {
      CHECK(sparse_layers == 4);
      // A sparse conv cannot go to a GPU: refused, naming it, before anything moved.
      const Tensor before = copy->state_dict().begin()->second;
      CHECK_THROWS_WITH(copy->to(Device("cuda")), doctest::Contains("the sparse convolution runs on the CPU only"));
      CHECK(copy->state_dict().begin()->second.device() == kCPU);
      CHECK(copy->state_dict().begin()->second.is_same(before));
    } else {
      Generator g(1);
      compress::SparseLinear layer(nn::Linear(16, 8, true, g), SparseFormat::bsr(4, 4));
      CHECK_THROWS_WITH(layer.to(Device("cuda")), doctest::Contains("must be CSR, this one is bsr4x4"));
      // conv1 (32, 9) and the classifier (10, 128) are not multiples of 4x4: dense, with the reason.
      CHECK(report[0].choice == "dense");
      CHECK(report[0].reason.find("do not divide") != std::string::npos);
      CHECK(report[3].choice == "dense");
      CHECK(sparse_layers == 2);
    }
  }
  // Measuring: each layer keeps whichever of dense and sparse ran faster on its real input.
  auto measured = nn::build_model("cnn", gen);
  measured->load_state_dict(model->state_dict());
  measured->eval();
  const auto report = compress::to_sparse(*measured, SparseFormat::csr(), {.measure = true, .example = x, .rounds = 3});
  for (const auto& r : report) {
    CHECK(r.dense_seconds > 0);
    CHECK(r.sparse_seconds > 0);
    CHECK((r.choice == "csr") == (r.dense_seconds > r.sparse_seconds));
  }
  CHECK(max(abs(measured->forward(x) - dense)).item() < 1e-5);
  auto training = nn::build_model("cnn", gen);
  CHECK_THROWS_WITH(compress::to_sparse(*training, SparseFormat::csr()), doctest::Contains("eval()"));
}
