// tests/test_cuda_emulated.cpp — the CUDA row kernels (cuda/softmax_kernels.cuh:
// softmax, cross-entropy, the distillation KL and loss, forward and backward)
// run on the host through tests/cuda_emulator.h, against the CPU's row kernels
// (ops/cpu/softmax.cpp) on the same inputs.
//
// The GPU parity tests (tests/test_cuda.cpp) need a GPU; this one runs in every
// CI build, so a block reduction that drops a warp, a row index off by one or a
// missed output element fails here first. Rows of 10, 100 and 1000 classes take
// blocks of 32, 128 and 256 threads: one warp, several, and the most.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "minidl.h"
#include "ops/cpu/kernels.h"
// after minidl's headers: the kernels see the emulator's blockIdx, __syncthreads, shuffles
#include "cuda_emulator.h"
#include "cuda/reduce_kernels.cuh"
#include "cuda/softmax_kernels.cuh"

using namespace minidl;
namespace rows = minidl::cuda::rows;

namespace {

// max |a − b| / (1 + |b|) over the elements, NaN counting as a failure.
double worst(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to(DType::f64).to_vector<double>(), y = b.to(DType::f64).to_vector<double>();
  REQUIRE(x.size() == y.size());
  double w = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) || std::isnan(y[i])) return std::numeric_limits<double>::infinity();
    w = std::max(w, std::abs(x[i] - y[i]) / (1 + std::abs(y[i])));
  }
  return w;
}

// Filled with NaN: an element the kernel forgot to write fails the comparison.
Tensor poisoned(const Shape& shape, DType t) { return full(shape, std::numeric_limits<double>::quiet_NaN(), {.dtype = t}); }

template <class F>
void launch_rows(int64_t n, int64_t cols, F kernel) {
  minidl::testing::emulate({static_cast<unsigned>(n), 1, 1}, {static_cast<unsigned>(cuda::row_threads(cols)), 1, 1},
                           kernel);
}

template <class T>
void check_rows(int64_t n, int64_t cols) {
  const DType dt = dtype_v<T>;
  const double tol = std::is_same_v<T, double> ? 1e-12 : 2e-5;
  CAPTURE(dt);
  CAPTURE(cols);
  Generator gen(static_cast<uint64_t>(cols));
  const Tensor s = mul(randn({n, cols}, {.dtype = dt}, gen), scalar_tensor(3.0, {.dtype = dt}));
  const Tensor t = mul(randn({n, cols}, {.dtype = dt}, gen), scalar_tensor(3.0, {.dtype = dt}));
  Tensor target = randint(0, cols, {n}, {}, gen);
  const Tensor weight = add(rand({cols}, {.dtype = dt}, gen), scalar_tensor(0.5, {.dtype = dt}));
  const Tensor scale = add(rand({n}, {.dtype = dt}, gen), scalar_tensor(0.5, {.dtype = dt}));

  for (bool log : {false, true}) {
    CAPTURE(log);
    Tensor want = poisoned({n, cols}, dt), got = poisoned({n, cols}, dt);
    cpu::softmax_rows(want.arg(), s.arg(), log);
    launch_rows(n, cols, [&] { rows::softmax_kernel<T>(got.data_ptr<T>(), s.data_ptr<T>(), cols, log); });
    CHECK(worst(got, want) <= tol);
    const Tensor g = randn({n, cols}, {.dtype = dt}, gen);
    Tensor gw = poisoned({n, cols}, dt), gg = poisoned({n, cols}, dt);
    cpu::softmax_rows_backward(gw.arg(), g.arg(), want.arg(), log);
    launch_rows(n, cols, [&] {
      rows::softmax_backward_kernel<T>(gg.data_ptr<T>(), g.data_ptr<T>(), want.data_ptr<T>(), cols, log);
    });
    CHECK(worst(gg, gw) <= tol);
  }

  // Cross-entropy with class weights, label smoothing, an ignored row and a bad target.
  target.narrow(0, 1, 1).fill_(-100);
  for (bool bad : {false, true}) {
    CAPTURE(bad);
    if (bad) target.narrow(0, 2, 1).fill_(static_cast<double>(cols));
    const CrossEntropyParams p{-100, 0.1};
    Tensor lw = poisoned({n}, dt), lg = poisoned({n}, dt), sw = poisoned({n, 2}, dt), sg = poisoned({n, 2}, dt);
    Tensor stw = empty({1}, {.dtype = DType::int64}), stg = full({1}, -1, {.dtype = DType::int64});
    cpu::cross_entropy_rows(lw.arg(), sw.arg(), s.arg(), target.arg(), weight.arg(), p, stw.arg());
    launch_rows(n, cols, [&] {
      rows::cross_entropy_kernel<T>(lg.data_ptr<T>(), sg.data_ptr<T>(), s.data_ptr<T>(), target.data_ptr<int64_t>(),
                                    weight.data_ptr<T>(), cols, -100, 0.1, stg.data_ptr<int64_t>());
    });
    CHECK(worst(lg, lw) <= tol);
    CHECK(worst(sg, sw) <= tol);
    CHECK(stg.item<int64_t>() == stw.item<int64_t>());
    CHECK(stg.item<int64_t>() == (bad ? 2 : -1));
    if (bad) continue;  // the backward runs only on good targets
    Tensor gw = poisoned({n, cols}, dt), gg = poisoned({n, cols}, dt);
    cpu::cross_entropy_rows_backward(gw.arg(), scale.arg(), s.arg(), sw.arg(), target.arg(), weight.arg(), p);
    launch_rows(n, cols, [&] {
      rows::cross_entropy_backward_kernel<T>(gg.data_ptr<T>(), scale.data_ptr<T>(), 1, s.data_ptr<T>(),
                                             sw.data_ptr<T>(), target.data_ptr<int64_t>(), weight.data_ptr<T>(), cols,
                                             -100, 0.1);
    });
    CHECK(worst(gg, gw) <= tol);
  }
  target.narrow(0, 1, 2).fill_(0);

  // The distillation KL at T = 4, forward and both gradients.
  {
    Tensor lw = poisoned({n}, dt), lg = poisoned({n}, dt), sw = poisoned({n, 4}, dt), sg = poisoned({n, 4}, dt);
    cpu::kl_div_rows(lw.arg(), sw.arg(), s.arg(), t.arg(), 4.0);
    launch_rows(n, cols, [&] {
      rows::kl_div_kernel<T>(lg.data_ptr<T>(), sg.data_ptr<T>(), s.data_ptr<T>(), t.data_ptr<T>(), cols, 4.0);
    });
    CHECK(worst(lg, lw) <= tol);
    CHECK(worst(sg, sw) <= tol);
    Tensor gsw = poisoned({n, cols}, dt), gtw = poisoned({n, cols}, dt);
    Tensor gsg = poisoned({n, cols}, dt), gtg = poisoned({n, cols}, dt);
    cpu::kl_div_rows_backward(gsw.arg(), gtw.arg(), scale.arg(), s.arg(), t.arg(), sw.arg(), lw.arg(), 4.0);
    launch_rows(n, cols, [&] {
      rows::kl_div_backward_kernel<T>(gsg.data_ptr<T>(), gtg.data_ptr<T>(), scale.data_ptr<T>(), 1, s.data_ptr<T>(),
                                      t.data_ptr<T>(), sw.data_ptr<T>(), lw.data_ptr<T>(), cols, 4.0);
    });
    CHECK(worst(gsg, gsw) <= tol);
    CHECK(worst(gtg, gtw) <= tol);
  }

  // The whole distillation loss and its gradient, T = 2, α = 0.7, a batch mean.
  {
    const DistillationParams p{2.0, 0.7, 1.0 / static_cast<double>(n)};
    Tensor kw = poisoned({n}, dt), kg = poisoned({n}, dt), cw = poisoned({n}, dt), cg = poisoned({n}, dt);
    Tensor gw = poisoned({n, cols}, dt), gg = poisoned({n, cols}, dt);
    Tensor stw = empty({1}, {.dtype = DType::int64}), stg = full({1}, -1, {.dtype = DType::int64});
    cpu::distillation_rows(kw.arg(), cw.arg(), gw.arg(), s.arg(), t.arg(), target.arg(), p, stw.arg());
    launch_rows(n, cols, [&] {
      rows::distillation_kernel<T>(kg.data_ptr<T>(), cg.data_ptr<T>(), gg.data_ptr<T>(), s.data_ptr<T>(),
                                   t.data_ptr<T>(), target.data_ptr<int64_t>(), cols, p.temperature,
                                   p.alpha * p.temperature * p.grad_scale, (1 - p.alpha) * p.grad_scale,
                                   stg.data_ptr<int64_t>());
    });
    CHECK(worst(kg, kw) <= tol);
    CHECK(worst(cg, cw) <= tol);
    CHECK(worst(gg, gw) <= tol);
    CHECK(stg.item<int64_t>() == -1);
  }
}

// The row reduction: values (and the first extreme's index) against cpu::reduce_rows.
template <class T>
void check_reduce(int64_t n, int64_t cols) {
  const DType dt = dtype_v<T>;
  CAPTURE(dt);
  CAPTURE(cols);
  Generator gen(static_cast<uint64_t>(cols) + 7);
  Tensor x = std::is_floating_point_v<T> ? randn({n, cols}, {.dtype = dt}, gen) : randint(-1000, 1000, {n, cols}, {.dtype = dt}, gen);
  if constexpr (std::is_floating_point_v<T>) x.narrow(0, 1, 1).narrow(1, cols / 2, 1).fill_(std::nan(""));  // a NaN wins max/min
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::logsumexp, ReduceOp::var}) {
    CAPTURE(static_cast<int>(op));
    const bool extreme = op == ReduceOp::max || op == ReduceOp::min;
    Tensor vw = poisoned({n}, dt), vg = poisoned({n}, dt);
    Tensor iw = full({n}, -7, {.dtype = DType::int64}), ig = full({n}, -7, {.dtype = DType::int64});
    cpu::reduce_rows(op, vw.arg(), extreme ? iw.arg() : TensorArg{}, x.arg(), 1.0);
    minidl::testing::emulate({static_cast<unsigned>(n), 1, 1}, {static_cast<unsigned>(cuda::row_threads(cols)), 1, 1},
                             [&] {
                               cuda::reduce::reduce_rows_kernel<T>(op, vg.arg(), extreme ? ig.data_ptr<int64_t>() : nullptr,
                                                                   x.arg(), 1.0);
                             });
    const std::vector<double> a = vg.to(DType::f64).to_vector<double>(), b = vw.to(DType::f64).to_vector<double>();
    for (int64_t r = 0; r < n; ++r) {
      CAPTURE(r);
      if (std::isnan(b[r])) CHECK(std::isnan(a[r]));  // the NaN row
      else CHECK((a[r] == b[r] || std::abs(a[r] - b[r]) <= 1e-5 * (1 + std::abs(b[r]))));  // == for infinities
    }
    if (extreme) CHECK(ig.to_vector<int64_t>() == iw.to_vector<int64_t>());
  }
}

}  // namespace

TEST_CASE("the CUDA row reduction on the host emulator equals the CPU's: sum, max/min and their indices, logsumexp, var") {
  for (int64_t cols : {1, 10, 100, 1000, 5000}) {
    check_reduce<float>(4, cols);
    check_reduce<double>(4, cols);
  }
  check_reduce<int64_t>(4, 300);
}

TEST_CASE("the CUDA row kernels on the host emulator equal the CPU's: softmax, cross-entropy, KL, distillation") {
  for (int64_t cols : {10, 100, 1000}) {
    check_rows<float>(5, cols);
    check_rows<double>(5, cols);
  }
}
