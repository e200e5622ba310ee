// tests/test_cuda_emulated.cpp — the CUDA row kernels (cuda/softmax_kernels.cuh:
// softmax, cross-entropy, the distillation KL and loss, forward and backward)
// run on the host through tests/cuda_emulator.h, against the CPU's row kernels
// (ops/cpu/softmax.cpp) on the same inputs; the elementwise, reduction, pooling,
// batch-norm, convolution, index and optimizer-update kernels against theirs. Whole layers (CSR,
// int8, bf16 Linear) are in test_cuda_emulated_layers.cpp.
//
// The GPU parity tests (tests/test_cuda.cpp) need a GPU; this one runs in every
// CI build, so a block reduction that drops a warp, a row index off by one or a
// missed output element fails here first. The row kernels run in both of their
// layouts (a warp per row, a block per row) on rows that start on and off the
// 16-byte boundaries their vector loads and stores need.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "minidl.h"
#include "ops/cpu/kernels.h"
#include "ops/dispatch.h"
// then the emulator, whose __global__, __shared__ and blockIdx minidl's headers must not see
#include "cuda_emulator.h"
// after the emulator: the kernels see its blockIdx, __syncthreads, shuffles
#include "cuda/conv_kernels.cuh"
#include "cuda/copy_kernels.cuh"
#include "cuda/elementwise_kernels.cuh"
#include "cuda/gemm_layout.h"
#include "cuda/index_kernels.cuh"
#include "cuda/norm_kernels.cuh"
#include "cuda/optim_kernels.cuh"
#include "cuda/pool_kernels.cuh"
#include "cuda/reduce_kernels.cuh"
#include "cuda/softmax_kernels.cuh"
#include "emulated_checks.h"

using namespace minidl;
using minidl::testing::poisoned;
using minidl::testing::worst;
namespace rows = minidl::cuda::rows;

namespace {

// The same copy of t, placed `shift` elements past the start of a fresh
// allocation: rows that start off the 16-byte boundaries the kernels' vector
// loads need, so the head / body / tail split (and, for two arrays at different
// shifts, the element-by-element path) is exercised.
Tensor shifted(const Tensor& t, int64_t shift) {
  Tensor flat = full({t.numel() + shift}, std::numeric_limits<double>::quiet_NaN(), {.dtype = t.dtype()});
  Tensor view = flat.narrow(0, shift, t.numel()).view(t.shape());
  view.copy_(t);
  return view;
}

// Row kernels launched as cuda/softmax.cu launches them, with the layout Row.
template <class Row, class F>
void launch_rows(int64_t n, int64_t cols, F kernel) {
  const cuda::RowLayout layout = std::is_same_v<Row, rows::WarpRow> ? cuda::RowLayout::warp : cuda::RowLayout::block;
  const rows::Geometry g = rows::geometry(layout, n, cols);
  minidl::testing::emulate(g.grid, g.block, kernel);
}

// Every row kernel with the layout Row against the CPU's, on rows of `cols`
// whose arrays start `shift` elements past a 16-byte boundary (the teacher 2 ·
// shift, so with a shift it sits at another offset than the student).
template <class T, class Row>
void check_rows(int64_t n, int64_t cols, int64_t shift) {
  const DType dt = dtype_v<T>;
  const double tol = std::is_same_v<T, double> ? 1e-12 : std::is_same_v<T, float> ? 2e-5 : 1e-2;
  CAPTURE(dt);
  CAPTURE(cols);
  CAPTURE(shift);
  const bool warp_per_row = std::is_same_v<Row, rows::WarpRow>;
  CAPTURE(warp_per_row);
  auto poisoned = [shift](const Shape& shape, DType type) {
    return shifted(minidl::testing::poisoned(shape, type), shift);
  };
  Generator gen(static_cast<uint64_t>(cols));
  Tensor s = shifted(mul(randn({n, cols}, {.dtype = dt}, gen), scalar_tensor(3.0, {.dtype = dt})), shift);
  const Tensor t = shifted(mul(randn({n, cols}, {.dtype = dt}, gen), scalar_tensor(3.0, {.dtype = dt})), 2 * shift);
  s.narrow(0, 0, 1).copy_(
      mul(s.narrow(0, 0, 1), scalar_tensor(3000.0, {.dtype = dt})));  // logits near ±1e4: exact, not overflow
  Tensor target = randint(0, cols, {n}, {}, gen);
  const Tensor weight = add(rand({cols}, {.dtype = dt}, gen), scalar_tensor(0.5, {.dtype = dt}));
  const Tensor scale = add(rand({n}, {.dtype = dt}, gen), scalar_tensor(0.5, {.dtype = dt}));

  for (bool log : {false, true}) {
    CAPTURE(log);
    Tensor want = poisoned({n, cols}, dt), got = poisoned({n, cols}, dt);
    cpu::softmax_rows(want.arg(), s.arg(), log);
    launch_rows<Row>(n, cols, [&] { rows::softmax_kernel<T, Row>(got.data_ptr<T>(), s.data_ptr<T>(), n, cols, log); });
    CHECK(worst(got, want) <= tol);
    const Tensor g = randn({n, cols}, {.dtype = dt}, gen);
    Tensor gw = poisoned({n, cols}, dt), gg = poisoned({n, cols}, dt);
    cpu::softmax_rows_backward(gw.arg(), g.arg(), want.arg(), log);
    launch_rows<Row>(n, cols, [&] {
      rows::softmax_backward_kernel<T, Row>(gg.data_ptr<T>(), g.data_ptr<T>(), want.data_ptr<T>(), n, cols, log);
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
    launch_rows<Row>(n, cols, [&] {
      rows::cross_entropy_kernel<T, Row>(lg.data_ptr<T>(), sg.data_ptr<T>(), s.data_ptr<T>(),
                                         target.data_ptr<int64_t>(), weight.data_ptr<T>(), n, cols, -100, 0.1,
                                         stg.data_ptr<int64_t>());
    });
    CHECK(worst(lg, lw) <= tol);
    CHECK(worst(sg, sw) <= tol);
    CHECK(stg.item<int64_t>() == stw.item<int64_t>());
    CHECK(stg.item<int64_t>() == (bad ? 2 : -1));
    if (bad) continue;  // the backward runs only on good targets
    Tensor gw = poisoned({n, cols}, dt), gg = poisoned({n, cols}, dt);
    cpu::cross_entropy_rows_backward(gw.arg(), scale.arg(), s.arg(), sw.arg(), target.arg(), weight.arg(), p);
    launch_rows<Row>(n, cols, [&] {
      rows::cross_entropy_backward_kernel<T, Row>(gg.data_ptr<T>(), scale.data_ptr<T>(), 1, s.data_ptr<T>(),
                                                  sw.data_ptr<T>(), target.data_ptr<int64_t>(), weight.data_ptr<T>(), n,
                                                  cols, -100, 0.1);
    });
    CHECK(worst(gg, gw) <= tol);
  }
  target.narrow(0, 1, 2).fill_(0);

  // The distillation KL at T = 4, forward and both gradients.
  {
    Tensor lw = poisoned({n}, dt), lg = poisoned({n}, dt), sw = poisoned({n, 4}, dt), sg = poisoned({n, 4}, dt);
    cpu::kl_div_rows(lw.arg(), sw.arg(), s.arg(), t.arg(), 4.0);
    launch_rows<Row>(n, cols, [&] {
      rows::kl_div_kernel<T, Row>(lg.data_ptr<T>(), sg.data_ptr<T>(), s.data_ptr<T>(), t.data_ptr<T>(), n, cols, 4.0);
    });
    CHECK(worst(lg, lw) <= tol);
    CHECK(worst(sg, sw) <= tol);
    Tensor gsw = poisoned({n, cols}, dt), gtw = poisoned({n, cols}, dt);
    Tensor gsg = poisoned({n, cols}, dt), gtg = poisoned({n, cols}, dt);
    cpu::kl_div_rows_backward(gsw.arg(), gtw.arg(), scale.arg(), s.arg(), t.arg(), sw.arg(), lw.arg(), 4.0);
    launch_rows<Row>(n, cols, [&] {
      rows::kl_div_backward_kernel<T, Row>(gsg.data_ptr<T>(), gtg.data_ptr<T>(), scale.data_ptr<T>(), 1,
                                           s.data_ptr<T>(), t.data_ptr<T>(), sw.data_ptr<T>(), lw.data_ptr<T>(), n,
                                           cols, 4.0);
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
    launch_rows<Row>(n, cols, [&] {
      rows::distillation_kernel<T, Row>(kg.data_ptr<T>(), cg.data_ptr<T>(), gg.data_ptr<T>(), s.data_ptr<T>(),
                                        t.data_ptr<T>(), target.data_ptr<int64_t>(), n, cols, p.temperature,
                                        p.alpha * p.temperature * p.grad_scale, (1 - p.alpha) * p.grad_scale,
                                        stg.data_ptr<int64_t>());
    });
    CHECK(worst(kg, kw) <= tol);
    CHECK(worst(cg, cw) <= tol);
    CHECK(worst(gg, gw) <= tol);
    CHECK(stg.item<int64_t>() == -1);
  }
}

// Grid-stride kernels run on 3 blocks of 64 threads: every thread loops.
template <class F>
void launch_grid(F kernel) {
  minidl::testing::emulate({3, 1, 1}, {64, 1, 1}, kernel);
}

// The row reduction: values (and the first extreme's index) against
// cpu::reduce_rows, each row reduced by `splits` blocks (then combined), or by
// as many as cuda/reduce.cu would launch (splits = 0). A split row's blocks
// have `threads` threads (the launcher's kThreads, or fewer: faster here), the
// combining blocks `combine_threads` (0: the launcher's choice; fewer than the
// parts: each thread folds several).
template <class T>
void check_reduce(int64_t n, int64_t cols, int64_t splits = 1, unsigned threads = cuda::kThreads,
                  unsigned combine_threads = 0) {
  namespace rk = minidl::cuda::reduce;
  const DType dt = dtype_v<T>;
  if (splits == 0) splits = rk::split_count(n, cols);
  if (combine_threads == 0) combine_threads = static_cast<unsigned>(cuda::row_threads(splits));
  CAPTURE(dt);
  CAPTURE(cols);
  CAPTURE(splits);
  Generator gen(static_cast<uint64_t>(cols) + 7);
  Tensor x = std::is_floating_point_v<T> ? randn({n, cols}, {.dtype = dt}, gen)
                                         : randint(-1000, 1000, {n, cols}, {.dtype = dt}, gen);
  if constexpr (std::is_floating_point_v<T>) {
    x.narrow(0, 0, 1).copy_(add(x.narrow(0, 0, 1), scalar_tensor(1e4, {.dtype = dt})));  // var: a large mean
    x.narrow(0, 1, 1).narrow(1, cols / 2, 1).fill_(std::nan(""));  // a NaN wins max/min
    x.narrow(0, 2, 1).fill_(INFINITY);                             // +inf and a NaN: logsumexp NaN
    x.narrow(0, 2, 1).narrow(1, cols - 1, 1).fill_(std::nan(""));
    x.narrow(0, 3, 1).fill_(-INFINITY);  // all −inf: logsumexp −inf; max and min tie everywhere
  }
  for (ReduceOp op : {ReduceOp::sum, ReduceOp::max, ReduceOp::min, ReduceOp::logsumexp, ReduceOp::var}) {
    CAPTURE(static_cast<int>(op));
    const bool extreme = op == ReduceOp::max || op == ReduceOp::min;
    Tensor vw = poisoned({n}, dt), vg = poisoned({n}, dt);
    Tensor iw = full({n}, -7, {.dtype = DType::int64}), ig = full({n}, -7, {.dtype = DType::int64});
    cpu::reduce_rows(op, vw.arg(), extreme ? iw.arg() : TensorArg{}, x.arg(), 1.0);
    int64_t* indices = extreme ? ig.data_ptr<int64_t>() : nullptr;
    if (splits == 1) {
      minidl::testing::emulate({static_cast<unsigned>(n), 1, 1}, {static_cast<unsigned>(cuda::row_threads(cols)), 1, 1},
                               [&] { rk::reduce_rows_kernel<T>(op, vg.arg(), indices, x.arg(), 1.0, 1, nullptr); });
    } else {  // as cuda/reduce.cu launches the two kernels; the partials poisoned
      std::vector<rk::Partial> partials(n * splits, rk::Partial{NAN, NAN, -9, true});
      minidl::testing::emulate({static_cast<unsigned>(n * splits), 1, 1}, {threads, 1, 1}, [&] {
        rk::reduce_rows_kernel<T>(op, vg.arg(), indices, x.arg(), 1.0, splits, partials.data());
      });
      if constexpr (std::is_floating_point_v<T>)
        CHECK(std::isnan(vg.to(DType::f64).to_vector<double>()[0]));  // the first kernel writes no answer
      minidl::testing::emulate({static_cast<unsigned>(n), 1, 1}, {combine_threads, 1, 1}, [&] {
        rk::combine_kernel<T>(op, vg.arg(), indices, x.arg(), 1.0, splits, partials.data());
      });
    }
    const std::vector<double> a = vg.to(DType::f64).to_vector<double>(), b = vw.to(DType::f64).to_vector<double>();
    for (int64_t r = 0; r < n; ++r) {
      CAPTURE(r);
      if (std::isnan(b[r]))
        CHECK(std::isnan(a[r]));  // the NaN row
      else
        CHECK((a[r] == b[r] || std::abs(a[r] - b[r]) <= 1e-5 * (1 + std::abs(b[r]))));  // == for infinities
    }
    if (extreme) CHECK(ig.to_vector<int64_t>() == iw.to_vector<int64_t>());
  }
}

}  // namespace

TEST_CASE(
    "the CUDA row reduction on the host emulator equals the CPU's: sum, max/min and their indices, logsumexp, var") {
  for (int64_t cols : {1, 10, 100, 1000, 5000}) {
    check_reduce<float>(4, cols);
    check_reduce<double>(4, cols);
  }
  // Rows split across blocks and combined: any split must give the row's answer
  // (parts of 1 column; of 2, the last two empty; uneven parts; a combining block
  // with fewer threads than parts), and long rows as the launcher splits them.
  for (int64_t splits : {2, 3, 7, 10}) check_reduce<float>(4, 10, splits, 32);
  check_reduce<float>(4, 1000, 7, 32, 2);
  check_reduce<double>(4, 5000, 7, 64);
  check_reduce<int64_t>(4, 300, 3, 32);
  check_reduce<float>(4, 20000, 0, 64);
  CHECK(cuda::reduce::split_count(4, 20000) == 5);
  CHECK(cuda::reduce::split_count(1, 10'000'000) == cuda::reduce::kSplitBlocks);  // a whole-tensor sum
  CHECK(cuda::reduce::split_count(4096, 100'000) == 1);                           // rows enough to fill the GPU
  CHECK(cuda::reduce::split_count(2, 8000) == 1);                                 // rows too short to share
  check_reduce<int64_t>(4, 300);
}

TEST_CASE("the CUDA row kernels on the host emulator equal the CPU's: softmax, cross-entropy, KL, distillation") {
  // Both layouts (the launcher picks one by length; either must be right at any
  // length): a warp per row, 8 rows to a block, 9 rows so the second block has 7
  // warps past the end; a block per row, of 32 to 256 threads. Shifts put rows
  // off the 16-byte boundaries; rows of 10 or 37 floats start at a different
  // offset each, whatever the shift.
  check_rows<float, rows::WarpRow>(9, 1, 0);
  check_rows<float, rows::WarpRow>(9, 10, 0);
  check_rows<float, rows::WarpRow>(9, 37, 1);
  check_rows<float, rows::WarpRow>(9, 1000, 3);
  check_rows<float, rows::BlockRow>(5, 10, 1);
  check_rows<float, rows::BlockRow>(5, 1000, 0);
  check_rows<double, rows::WarpRow>(9, 10, 1);
  check_rows<double, rows::BlockRow>(5, 37, 1);
  check_rows<bf16, rows::WarpRow>(9, 37, 3);  // 8 values to a chunk
  check_rows<bf16, rows::BlockRow>(5, 300, 0);
}

TEST_CASE("the CUDA elementwise and copy kernels on the host emulator: broadcasting, strides, every op") {
  namespace ew = minidl::cuda::elementwise_kernels;
  namespace cp = minidl::cuda::copy_kernels;
  Generator gen(3);
  const Tensor x = randn({4, 1, 7}, {}, gen), y = add(abs(randn({3, 7}, {}, gen)), scalar_tensor(0.5));
  const Shape shape = {4, 3, 7};
  const int64_t n = 4 * 3 * 7;
  const TensorArg xa = broadcast_arg(x, shape), ya = broadcast_arg(y, shape);  // stride 0 on broadcast dims
  for (BinaryOp op : {BinaryOp::add, BinaryOp::sub, BinaryOp::mul, BinaryOp::div, BinaryOp::pow, BinaryOp::maximum,
                      BinaryOp::minimum, BinaryOp::xlogy, BinaryOp::gelu_backward, BinaryOp::relu_backward}) {
    CAPTURE(static_cast<int>(op));
    Tensor want = poisoned(shape, DType::f32), got = poisoned(shape, DType::f32);
    cpu::binary(op, want.arg(), op == BinaryOp::pow ? ya : xa, op == BinaryOp::pow ? xa : ya);
    launch_grid([&] {
      ew::binary_kernel<float, float>(op, got.arg(), op == BinaryOp::pow ? ya : xa, op == BinaryOp::pow ? xa : ya,
                                      false, n);
    });
    CHECK(worst(got, want) <= 1e-6);
  }
  for (BinaryOp op : {BinaryOp::lt, BinaryOp::ge, BinaryOp::eq}) {
    Tensor want = empty(shape, {.dtype = DType::boolean}), got = empty(shape, {.dtype = DType::boolean});
    cpu::binary(op, want.arg(), xa, ya);
    launch_grid([&] { ew::binary_kernel<float, bool>(op, got.arg(), xa, ya, false, n); });
    CHECK(got.to_vector<bool>() == want.to_vector<bool>());
  }
  // Unary ops through a transposed view, and where.
  const Tensor u = randn({9, 13}, {}, gen).t();
  const Tensor pos = add(abs(u), scalar_tensor(0.1));
  for (UnaryOp op :
       {UnaryOp::neg, UnaryOp::exp, UnaryOp::abs, UnaryOp::sign, UnaryOp::relu, UnaryOp::leaky_relu, UnaryOp::sigmoid,
        UnaryOp::tanh, UnaryOp::gelu, UnaryOp::clamp, UnaryOp::log, UnaryOp::sqrt, UnaryOp::pow_scalar}) {
    CAPTURE(static_cast<int>(op));
    const bool needs_positive = op == UnaryOp::log || op == UnaryOp::sqrt || op == UnaryOp::pow_scalar;
    const TensorArg in = (needs_positive ? pos : u).arg();
    Tensor want = poisoned({13, 9}, DType::f32), got = poisoned({13, 9}, DType::f32);
    cpu::unary(op, want.arg(), in, 0.3, 0.7);
    launch_grid([&] { ew::unary_kernel<float>(op, got.arg(), in, false, 0.3, 0.7, 13 * 9); });
    CHECK(worst(got, want) <= 2e-6);
  }
  // The flat paths (every operand contiguous: no offset arithmetic), and logical_not.
  {
    const Tensor a = randn({5, 11}, {}, gen), b = randn({5, 11}, {}, gen);
    Tensor want = poisoned({5, 11}, DType::f32), got = poisoned({5, 11}, DType::f32);
    cpu::binary(BinaryOp::sub, want.arg(), a.arg(), b.arg());
    launch_grid([&] { ew::binary_kernel<float, float>(BinaryOp::sub, got.arg(), a.arg(), b.arg(), true, 55); });
    CHECK(worst(got, want) <= 0);
    cpu::unary(UnaryOp::tanh, want.arg(), a.arg(), 0, 0);
    launch_grid([&] { ew::unary_kernel<float>(UnaryOp::tanh, got.arg(), a.arg(), true, 0, 0, 55); });
    CHECK(worst(got, want) <= 2e-6);
    const Tensor some_zero = relu(u);  // a transposed view, about half of it 0
    for (bool flat : {false, true}) {
      CAPTURE(flat);
      const Tensor in = flat ? some_zero.contiguous() : some_zero;
      Tensor nw = empty({13, 9}, {.dtype = DType::boolean}), ng = full({13, 9}, 1, {.dtype = DType::boolean});
      cpu::unary(UnaryOp::logical_not, nw.arg(), in.arg(), 0, 0);
      launch_grid([&] { ew::logical_not_kernel<float>(ng.arg(), in.arg(), flat, 13 * 9); });
      CHECK(ng.to_vector<bool>() == nw.to_vector<bool>());
      CHECK(sum(nw.to(DType::f32)).item() > 20);  // both answers present
      CHECK(sum(nw.to(DType::f32)).item() < 100);
    }
  }
  {
    const Tensor cond = gt(x, scalar_tensor(0.0));
    Tensor want = poisoned(shape, DType::f32), got = poisoned(shape, DType::f32);
    const TensorArg ca = broadcast_arg(cond, shape);
    cpu::where(want.arg(), ca, xa, ya);
    launch_grid([&] { ew::where_kernel<float>(got.arg(), ca, xa, ya, n); });
    CHECK(worst(got, want) <= 0);
  }
  // A converting copy from a transposed view into a strided destination.
  {
    Tensor wide = zeros({13, 18}, {.dtype = DType::f64});
    Tensor dst = wide.slice(1, 0, 18, 2);  // every other column
    launch_grid([&] { cp::copy_kernel<double, float>(dst.arg(), u.arg(), 13 * 9); });
    CHECK(worst(dst.contiguous(), u.to(DType::f64).contiguous()) <= 0);
    CHECK(sum(abs(wide.slice(1, 1, 18, 2))).item() == 0);  // the other columns untouched
  }
  // A fill through the same strided view.
  {
    Tensor wide = randn({13, 18}, {.dtype = DType::f64}, gen);
    const Tensor before = wide.clone();
    Tensor dst = wide.slice(1, 1, 18, 2);
    launch_grid([&] { cp::fill_kernel<double>(dst.arg(), -2.5, 13 * 9); });
    CHECK(worst(dst, full({13, 9}, -2.5, {.dtype = DType::f64})) <= 0);
    CHECK(worst(wide.slice(1, 0, 18, 2), before.slice(1, 0, 18, 2)) <= 0);
  }
}

TEST_CASE("dropout's mask on the host emulator is the CPU's, bit for bit, in f32, f64 and bf16") {
  namespace cp = minidl::cuda::copy_kernels;
  const int64_t n = 5000;
  for (double p : {0.1, 0.5, 0.9}) {
    CAPTURE(p);
    const uint64_t key = 0x243f6a8885a308d3ull + static_cast<uint64_t>(p * 100);
    Tensor want = poisoned({n}, DType::f32), got = poisoned({n}, DType::f32);
    cpu::dropout_mask(want.arg(), p, key);
    launch_grid([&] {
      cp::dropout_mask_kernel<float>(got.data_ptr<float>(), n, key, dropout_keep_threshold(p),
                                     static_cast<float>(1 / (1 - p)));
    });
    CHECK(got.to_vector<float>() == want.to_vector<float>());
    Tensor want64 = poisoned({n}, DType::f64), got64 = poisoned({n}, DType::f64);
    cpu::dropout_mask(want64.arg(), p, key);
    launch_grid([&] {
      cp::dropout_mask_kernel<double>(got64.data_ptr<double>(), n, key, dropout_keep_threshold(p), 1 / (1 - p));
    });
    CHECK(got64.to_vector<double>() == want64.to_vector<double>());
    Tensor want16 = poisoned({n}, DType::bf16), got16 = poisoned({n}, DType::bf16);
    cpu::dropout_mask(want16.arg(), p, key);
    launch_grid([&] {
      cp::dropout_mask_kernel<bf16>(got16.data_ptr<bf16>(), n, key, dropout_keep_threshold(p),
                                    bf16(static_cast<float>(1 / (1 - p))));
    });
    CHECK(got16.to(DType::f32).to_vector<float>() == want16.to(DType::f32).to_vector<float>());
  }
}

TEST_CASE("the CUDA pooling kernels on the host emulator equal the CPU's: max with winners, average, adaptive") {
  namespace pk = minidl::cuda::pool_kernels;
  Generator gen(4);
  const Tensor x = randn({2, 3, 11, 10}, {}, gen);
  const std::vector<Pool2dParams> params = {
      {2, 2, 2, 2, 0, 0, true}, {3, 3, 1, 1, 1, 1, true}, {3, 3, 2, 2, 1, 1, false}};
  for (const Pool2dParams& p : params) {
    CAPTURE(p.kernel_h);
    CAPTURE(p.stride_h);
    CAPTURE(p.pad_h);
    const int64_t Ho = (11 + 2 * p.pad_h - p.kernel_h) / p.stride_h + 1,
                  Wo = (10 + 2 * p.pad_w - p.kernel_w) / p.stride_w + 1;
    const Shape ys = {2, 3, Ho, Wo};
    Tensor yw = poisoned(ys, DType::f32), yg = poisoned(ys, DType::f32);
    std::vector<int32_t> aw(2 * 3 * Ho * Wo, -1), ag(aw.size(), -1);
    cpu::max_pool2d_forward(yw.arg(), aw.data(), x.arg(), p);
    const pk::Planes planes = pk::planes_of(x.arg(), yw.arg());
    launch_grid([&] { pk::max_pool_kernel<float>(yg.data_ptr<float>(), ag.data(), x.data_ptr<float>(), planes, p); });
    CHECK(worst(yg, yw) <= 0);
    CHECK(ag == aw);
    const Tensor gy = randn(ys, {}, gen);
    Tensor gw = poisoned(x.shape(), DType::f32), gg = zeros(x.shape());
    cpu::max_pool2d_backward(gw.arg(), gy.arg(), aw.data());
    launch_grid(
        [&] { pk::max_pool_backward_kernel<float>(gg.data_ptr<float>(), gy.data_ptr<float>(), ag.data(), planes); });
    CHECK(worst(gg, gw) <= 1e-6);
    Tensor vw = poisoned(ys, DType::f32), vg = poisoned(ys, DType::f32);
    cpu::avg_pool2d_forward(vw.arg(), x.arg(), p);
    launch_grid([&] { pk::avg_pool_kernel<float, false>(vg.data_ptr<float>(), x.data_ptr<float>(), planes, p); });
    CHECK(worst(vg, vw) <= 1e-6);
    Tensor bw = poisoned(x.shape(), DType::f32), bg = zeros(x.shape());
    cpu::avg_pool2d_backward(bw.arg(), gy.arg(), p);
    launch_grid(
        [&] { pk::avg_pool_backward_kernel<float, false>(bg.data_ptr<float>(), gy.data_ptr<float>(), planes, p); });
    CHECK(worst(bg, bw) <= 1e-6);
  }
  Tensor aw = poisoned({2, 3, 4, 3}, DType::f32), ag = poisoned({2, 3, 4, 3}, DType::f32);
  cpu::adaptive_avg_pool2d_forward(aw.arg(), x.arg());
  const pk::Planes planes = pk::planes_of(x.arg(), aw.arg());
  launch_grid([&] { pk::avg_pool_kernel<float, true>(ag.data_ptr<float>(), x.data_ptr<float>(), planes, {}); });
  CHECK(worst(ag, aw) <= 1e-6);
}

namespace {

// Batch norm's kernels against the CPU's on x of (N, C, L), each channel
// reduced by `parts` blocks of `threads` (then combined; dx then by a grid of
// its own), as cuda/norm.cu launches them; parts = 0: as many as it would.
void check_batch_norm(int64_t N, int64_t C, int64_t L, int64_t parts, unsigned threads) {
  namespace nk = minidl::cuda::norm_kernels;
  namespace rk = minidl::cuda::reduce;
  if (parts == 0) parts = rk::split_count(C, N * L);
  CAPTURE(parts);
  Generator gen(5);
  const DType f64 = DType::f64;
  // a mean of 5 and a spread of 1: the two-pass variance matters
  const Tensor x = add(randn({N, C, L}, {.dtype = f64}, gen), scalar_tensor(5.0, {.dtype = f64}));
  const Tensor w = randn({C}, {.dtype = f64}, gen), b = randn({C}, {.dtype = f64}, gen);
  const Tensor gy = randn({N, C, L}, {.dtype = f64}, gen);
  const nk::Dims d = nk::dims_of(x.arg());
  const dim3 blocks{static_cast<unsigned>(C * parts), 1, 1}, block{threads, 1, 1};
  const dim3 channels{static_cast<unsigned>(C), 1, 1}, combining{static_cast<unsigned>(cuda::row_threads(parts)), 1, 1};
  std::vector<rk::Partial> partials(C * parts, rk::Partial{NAN, NAN, -9, true});  // poisoned
  auto* scratch = parts > 1 ? partials.data() : nullptr;

  Tensor mw = poisoned({C}, f64), vw = poisoned({C}, f64), mg = poisoned({C}, f64), vg = poisoned({C}, f64);
  cpu::batch_norm_stats(mw.arg(), vw.arg(), x.arg());
  minidl::testing::emulate(blocks, block, [&] {
    nk::stats_kernel<double>(mg.data_ptr<double>(), vg.data_ptr<double>(), x.data_ptr<double>(), d, parts, scratch);
  });
  if (parts > 1)
    minidl::testing::emulate(channels, combining, [&] {
      nk::stats_combine_kernel<double>(mg.data_ptr<double>(), vg.data_ptr<double>(), parts, scratch);
    });
  CHECK(worst(mg, mw) <= 1e-12);
  CHECK(worst(vg, vw) <= 1e-12);

  const Tensor invstd = div(scalar_tensor(1.0, {.dtype = f64}), sqrt(add(vw, scalar_tensor(1e-5, {.dtype = f64}))));
  Tensor yw = poisoned(x.shape(), f64), yg = poisoned(x.shape(), f64);
  cpu::batch_norm_apply(yw.arg(), x.arg(), mw.arg(), invstd.arg(), w.arg(), b.arg());
  launch_grid([&] {
    nk::apply_kernel<double>(yg.data_ptr<double>(), x.data_ptr<double>(), mw.data_ptr<double>(),
                             invstd.data_ptr<double>(), w.data_ptr<double>(), b.data_ptr<double>(), d);
  });
  CHECK(worst(yg, yw) <= 1e-12);

  for (bool training : {true, false}) {
    CAPTURE(training);
    Tensor gxw = poisoned(x.shape(), f64), gxg = poisoned(x.shape(), f64);
    Tensor gww = poisoned({C}, f64), gwg = poisoned({C}, f64), gbw = poisoned({C}, f64), gbg = poisoned({C}, f64);
    cpu::batch_norm_backward(gxw.arg(), gww.arg(), gbw.arg(), gy.arg(), x.arg(), mw.arg(), invstd.arg(), w.arg(),
                             training);
    std::fill(partials.begin(), partials.end(), rk::Partial{NAN, NAN, -9, true});
    minidl::testing::emulate(blocks, block, [&] {
      nk::backward_kernel<double>(gxg.data_ptr<double>(), gwg.data_ptr<double>(), gbg.data_ptr<double>(),
                                  gy.data_ptr<double>(), x.data_ptr<double>(), mw.data_ptr<double>(),
                                  invstd.data_ptr<double>(), w.data_ptr<double>(), d, training, parts, scratch);
    });
    if (parts > 1) {
      minidl::testing::emulate(channels, combining, [&] {
        nk::backward_combine_kernel<double>(gwg.data_ptr<double>(), gbg.data_ptr<double>(), parts, scratch);
      });
      launch_grid([&] {
        nk::backward_input_kernel<double>(gxg.data_ptr<double>(), gy.data_ptr<double>(), x.data_ptr<double>(),
                                          mw.data_ptr<double>(), invstd.data_ptr<double>(), w.data_ptr<double>(), d,
                                          training, parts, scratch);
      });
    }
    CHECK(worst(gxg, gxw) <= 1e-12);
    CHECK(worst(gwg, gww) <= 1e-12);
    CHECK(worst(gbg, gbw) <= 1e-12);
  }
}

}  // namespace

TEST_CASE("the CUDA batch-norm kernels on the host emulator equal the CPU's: statistics, normalisation, backward") {
  check_batch_norm(6, 5, 9, 1, 64);  // a block per channel
  // Channels split into parts (of 1 value; uneven; empty last parts) and combined,
  // and a long channel as cuda/norm.cu splits it.
  check_batch_norm(2, 3, 3, 6, 32);
  check_batch_norm(6, 5, 9, 4, 32);
  check_batch_norm(3, 2, 5, 10, 32);  // parts of 2 values: the last two empty
  check_batch_norm(40, 2, 250, 0, 64);
  CHECK(minidl::cuda::reduce::split_count(2, 40 * 250) == 3);
}

TEST_CASE("the CUDA convolution kernels on the host emulator: im2col by its definition, col2im as its adjoint") {
  namespace ck = minidl::cuda::conv_kernels;
  Generator gen(6);
  // stride (2, 1), padding (1, 2), dilation (1, 2): every index of the unrolling moves.
  const Conv2dParams p{2, 1, 1, 2, 1, 2, 1, false};
  const int64_t C = 3, H = 9, W = 8, kh = 3, kw = 2;
  const int64_t Ho = (H + 2 * p.pad_h - p.dilation_h * (kh - 1) - 1) / p.stride_h + 1;
  const int64_t Wo = (W + 2 * p.pad_w - p.dilation_w * (kw - 1) - 1) / p.stride_w + 1;
  const ck::Shape s{1, C, H, W, 4, kh, kw, Ho, Wo, 1};
  for (int64_t B : {1, 3}) {  // one sample, and three side by side
    CAPTURE(B);
    const Tensor x = randn({B, C, H, W}, {.dtype = DType::f64}, gen);
    Tensor col = poisoned({C * kh * kw, B * Ho * Wo}, DType::f64);
    launch_grid([&] { ck::im2col_kernel<double>(col.data_ptr<double>(), x.data_ptr<double>(), s, p, B); });
    const std::vector<double> xv = x.to_vector<double>(), cv = col.to_vector<double>();
    int64_t wrong = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j)
            for (int64_t oh = 0; oh < Ho; ++oh)
              for (int64_t ow = 0; ow < Wo; ++ow) {
                const int64_t h = oh * p.stride_h - p.pad_h + i * p.dilation_h,
                              w = ow * p.stride_w - p.pad_w + j * p.dilation_w;
                const double want = h >= 0 && h < H && w >= 0 && w < W ? xv[((b * C + c) * H + h) * W + w] : 0.0;
                wrong += cv[((c * kh + i) * kw + j) * B * Ho * Wo + (b * Ho + oh) * Wo + ow] != want;
              }
    CHECK(wrong == 0);
    // col2im is im2col's adjoint: <im2col(x), g> = <x, col2im(g)> for any g.
    const Tensor g = randn({C * kh * kw, B * Ho * Wo}, {.dtype = DType::f64}, gen);
    Tensor back = poisoned({B, C, H, W}, DType::f64);
    launch_grid([&] { ck::col2im_kernel<double>(back.data_ptr<double>(), g.data_ptr<double>(), s, p, B); });
    CHECK(sum(mul(col, g)).item() == doctest::Approx(sum(mul(x, back)).item()).epsilon(1e-12));
  }
  // The bias gradient sums each output channel over samples and positions: a
  // block per channel, or each channel's 100 values in 3 or 7 parts, combined.
  const Tensor gy = randn({2, 4, Ho, Wo}, {.dtype = DType::f64}, gen);
  const ck::Shape s2{2, C, H, W, 4, kh, kw, Ho, Wo, 1};
  for (int64_t parts : {1, 3, 7}) {
    CAPTURE(parts);
    namespace rk = minidl::cuda::reduce;
    Tensor gb = poisoned({4}, DType::f64);
    std::vector<rk::Partial> partials(4 * parts, rk::Partial{NAN, NAN, -9, true});
    rk::Partial* scratch = parts > 1 ? partials.data() : nullptr;
    minidl::testing::emulate({static_cast<unsigned>(4 * parts), 1, 1}, {32, 1, 1}, [&] {
      ck::bias_grad_kernel<double>(gb.data_ptr<double>(), gy.data_ptr<double>(), s2, parts, scratch);
    });
    if (parts > 1)
      minidl::testing::emulate({4, 1, 1}, {static_cast<unsigned>(cuda::row_threads(parts)), 1, 1},
                               [&] { rk::sum_parts_kernel<double>(gb.data_ptr<double>(), parts, scratch); });
    CHECK(worst(gb, sum(gy, {0, 2, 3})) <= 1e-12);
  }
  // The gradient through a fused ReLU: gy where the output is positive, else 0.
  const Tensor y = relu(randn({2, 4, Ho, Wo}, {.dtype = DType::f64}, gen));
  Tensor masked = poisoned(gy.shape(), DType::f64);
  launch_grid([&] {
    ck::relu_mask_kernel<double>(masked.data_ptr<double>(), gy.data_ptr<double>(), y.data_ptr<double>(), gy.numel());
  });
  CHECK(worst(masked, where(gt(y, scalar_tensor(0.0, {.dtype = DType::f64})), gy, 0.0)) <= 0);
}

namespace {

// What cuda/conv.cu's chunk loop runs on, here: the kernels on the host
// emulator, the CPU's GEMM and strided copy in place of cuda::gemm and cuda::copy.
struct OnTheEmulator {
  template <class T>
  void im2col(T* col, const T* x, const cuda::conv_kernels::Shape& s, const Conv2dParams& p, int64_t samples) const {
    launch_grid([&] { cuda::conv_kernels::im2col_kernel<T>(col, x, s, p, samples); });
  }
  template <class T>
  void col2im(T* gx, const T* gcol, const cuda::conv_kernels::Shape& s, const Conv2dParams& p, int64_t samples) const {
    launch_grid([&] { cuda::conv_kernels::col2im_kernel<T>(gx, gcol, s, p, samples); });
  }
  void gemm(int64_t M, int64_t N, int64_t K, double alpha, const TensorArg& A, const TensorArg& B, double beta,
            const TensorArg& C, const GemmEpilogue& epilogue = {}) const {
    cpu::gemm(M, N, K, alpha, A, B, beta, C, cpu::GemmKernel::best, epilogue);
  }
  void copy(const TensorArg& dst, const TensorArg& src) const { cpu::copy(dst, src); }
};

}  // namespace

TEST_CASE("the CUDA convolution's chunk loop on the host emulator equals the CPU's: groups, chunks, permutes") {
  namespace ck = minidl::cuda::conv_kernels;
  Generator gen(16);
  const int64_t N = 5, C = 4, H = 9, W = 8, O = 6, kh = 3, kw = 2, G = 2;
  const Conv2dParams strided{2, 1, 1, 2, 1, 2, G, false};
  for (bool relu : {false, true}) {
    Conv2dParams p = strided;
    p.relu = relu;
    const int64_t Ho = (H + 2 * p.pad_h - p.dilation_h * (kh - 1) - 1) / p.stride_h + 1;
    const int64_t Wo = (W + 2 * p.pad_w - p.dilation_w * (kw - 1) - 1) / p.stride_w + 1;
    const ck::Shape s{N, C, H, W, O, kh, kw, Ho, Wo, G};
    const Tensor x = randn({N, C, H, W}, {.dtype = DType::f64}, gen);
    const Tensor w = randn({O, C / G, kh, kw}, {.dtype = DType::f64}, gen);
    const Tensor bias = randn({O}, {.dtype = DType::f64}, gen);
    const Tensor gy = randn({N, O, Ho, Wo}, {.dtype = DType::f64}, gen);
    Tensor want_y = poisoned({N, O, Ho, Wo}, DType::f64);
    cpu::conv2d_forward(want_y.arg(), x.arg(), w.arg(), bias.arg(), p);
    Tensor want_gx = poisoned(x.shape(), DType::f64), want_gw = poisoned(w.shape(), DType::f64);
    Conv2dParams linear = p;  // the chunk loop's backward takes gy already through the ReLU
    linear.relu = false;
    cpu::conv2d_backward(want_gx.arg(), want_gw.arg(), TensorArg{}, gy.arg(), x.arg(), w.arg(), TensorArg{}, linear);
    // Chunks of one (no permutes), of two and three (the last one short), of all five.
    for (int64_t chunk : {1, 2, 3, 5}) {
      CAPTURE(relu);
      CAPTURE(chunk);
      std::vector<double> col(chunk * C * kh * kw * Ho * Wo, NAN), packed(chunk * O * Ho * Wo, NAN);
      Tensor y = poisoned(want_y.shape(), DType::f64);
      ck::forward_chunks(OnTheEmulator{}, y.data_ptr<double>(), x.data_ptr<double>(), w.data_ptr<double>(),
                         bias.data_ptr<double>(), s, p, chunk, col.data(), packed.data());
      CHECK(worst(y, want_y) <= 1e-12);
      Tensor gx = poisoned(x.shape(), DType::f64), gw = poisoned(w.shape(), DType::f64);
      ck::backward_chunks(OnTheEmulator{}, gx.data_ptr<double>(), gw.data_ptr<double>(), gy.data_ptr<double>(),
                          x.data_ptr<double>(), w.data_ptr<double>(), s, linear, chunk, col.data(), packed.data());
      CHECK(worst(gx, want_gx) <= 1e-12);
      CHECK(worst(gw, want_gw) <= 1e-12);
      // One of the two gradients alone.
      Tensor gx_only = poisoned(x.shape(), DType::f64), gw_only = poisoned(w.shape(), DType::f64);
      ck::backward_chunks<double>(OnTheEmulator{}, gx_only.data_ptr<double>(), nullptr, gy.data_ptr<double>(),
                                  x.data_ptr<double>(), w.data_ptr<double>(), s, linear, chunk, col.data(),
                                  packed.data());
      ck::backward_chunks<double>(OnTheEmulator{}, nullptr, gw_only.data_ptr<double>(), gy.data_ptr<double>(),
                                  x.data_ptr<double>(), w.data_ptr<double>(), s, linear, chunk, col.data(),
                                  packed.data());
      CHECK(worst(gx_only, want_gx) <= 1e-12);
      CHECK(worst(gw_only, want_gw) <= 1e-12);
    }
  }
  // The chunk: as many samples as 64 MiB of columns hold, at least one, at most the batch.
  const ck::Shape mnist{128, 32, 28, 28, 32, 3, 3, 28, 28, 1}, small{128, 32, 14, 14, 32, 3, 3, 14, 14, 1},
      huge{4, 64, 512, 512, 64, 3, 3, 512, 512, 1};
  CHECK(ck::samples_per_chunk(mnist, sizeof(float)) == 74);  // 288 · 784 · 4 bytes = 0.86 MiB a sample
  CHECK(ck::samples_per_chunk(small, sizeof(float)) == 128);
  CHECK(ck::samples_per_chunk(huge, sizeof(float)) == 1);
  CHECK(ck::samples_per_chunk(mnist, sizeof(double)) == 37);
}

TEST_CASE("the CUDA index kernels on the host emulator equal the CPU's: select, add, gather, scatter, range check") {
  namespace ik = minidl::cuda::index_kernels;
  Generator gen(7);
  const Tensor x = randn({3, 8, 5}, {}, gen);
  const Tensor idx = from_vector<int64_t>({7, 0, 3, 3, 5}, {5});  // a repeat
  Tensor sw = poisoned({3, 5, 5}, DType::f32), sg = poisoned({3, 5, 5}, DType::f32);
  cpu::index_select(sw.arg(), x.arg(), idx.arg());
  launch_grid([&] {
    ik::index_select_kernel<float>(sg.data_ptr<float>(), x.data_ptr<float>(), idx.data_ptr<int64_t>(), 8, 5, 5, 75);
  });
  CHECK(worst(sg, sw) <= 0);
  Tensor aw = zeros({3, 8, 5}), ag = zeros({3, 8, 5});
  cpu::index_add(aw.arg(), idx.arg(), sw.arg());
  launch_grid([&] {
    ik::index_add_kernel<float>(ag.data_ptr<float>(), sw.data_ptr<float>(), idx.data_ptr<int64_t>(), 8, 5, 5, 75);
  });
  CHECK(worst(ag, aw) <= 1e-6);
  const Tensor gidx = randint(0, 8, {3, 4, 5}, {}, gen);
  Tensor gw = poisoned({3, 4, 5}, DType::f32), gg = poisoned({3, 4, 5}, DType::f32);
  cpu::gather(gw.arg(), x.arg(), gidx.arg(), 1);
  launch_grid([&] { ik::gather_kernel<float>(gg.arg(), x.arg(), gidx.arg(), 1, 60); });
  CHECK(worst(gg, gw) <= 0);
  const Tensor src = randn({3, 4, 5}, {}, gen);
  Tensor cw = zeros({3, 8, 5}), cg = zeros({3, 8, 5});
  cpu::scatter_add(cw.arg(), gidx.arg(), src.arg(), 1);
  launch_grid([&] { ik::scatter_add_kernel<float>(cg.arg(), gidx.arg(), src.arg(), 1, 60); });
  CHECK(worst(cg, cw) <= 1e-6);
  const Tensor bad = from_vector<int64_t>({1, 2, -100, 9, 3, 11}, {6});
  for (int64_t allowed : {int64_t{-100}, int64_t{INT64_MIN}}) {
    Tensor want = empty({1}, {.dtype = DType::int64}), got = full({1}, -1, {.dtype = DType::int64});
    cpu::find_out_of_range(want.arg(), bad.arg(), 8, allowed);
    launch_grid([&] {
      ik::out_of_range_kernel(reinterpret_cast<unsigned long long*>(got.data_ptr<int64_t>()), bad.data_ptr<int64_t>(),
                              6, 8, allowed);
    });
    CHECK(got.item<int64_t>() == want.item<int64_t>());
  }
}

namespace {

// Three steps of each optimizer: the CPU's update against the kernel's, from the
// same parameters and gradients. With `from_memory` the kernel reads the step
// count and the learning rate from memory, as each replay of a captured CUDA
// graph does, and the arguments it is launched with say otherwise (what memory
// says must win).
template <class P>
void check_optimizers() {
  namespace ok = minidl::cuda::optim_kernels;
  const DType dt = dtype_v<P>;
  CAPTURE(dt);
  const double tol = std::is_same_v<P, float> ? 1e-6 : 1e-2;  // bf16: at most one rounding of p apart
  const int64_t n = 1000;                                     // not a multiple of the 192 threads
  Generator gen(8);
  const Tensor p0 = randn({n}, {.dtype = dt}, gen);
  const double rates[] = {0.1, 0.05, 0.02};
  Tensor count = empty({1}, {.dtype = DType::int64}), rate = empty({1}, {.dtype = DType::f64});
  for (bool from_memory : {false, true}) {
    CAPTURE(from_memory);
    for (int config = 0; config < 3; ++config) {  // plain; momentum, dampening and decay; Nesterov
      CAPTURE(config);
      SgdStepArgs a;
      a.momentum = config ? 0.9 : 0;
      a.dampening = config == 1 ? 0.1 : 0;
      a.weight_decay = config ? 1e-2 : 0;
      a.nesterov = config == 2;
      Tensor pw = p0.clone(), pg = p0.clone();
      // poisoned: the first step must write the momentum buffer before it reads it
      Tensor bw = poisoned({n}, DType::f32), bg = poisoned({n}, DType::f32);
      for (int64_t t = 1; t <= 3; ++t) {
        const Tensor g = randn({n}, {.dtype = dt}, gen);
        a.lr = rates[t - 1];
        a.first_step = t == 1;
        cpu::sgd_step(pw.arg(), g.arg(), config ? bw.arg() : TensorArg{}, a);
        SgdStepArgs k = a;
        if (from_memory) {
          count.fill_(static_cast<double>(t));
          rate.fill_(a.lr);
          k.first_step = !a.first_step;
          k.lr = 99;
        }
        const int64_t* step = from_memory ? count.data_ptr<int64_t>() : nullptr;
        const double* lr = from_memory ? rate.data_ptr<double>() : nullptr;
        launch_grid([&] {
          ok::sgd_kernel<P>(pg.data_ptr<P>(), g.data_ptr<P>(), config ? bg.data_ptr<float>() : nullptr, n, SgdUpdate(k),
                            step, lr);
        });
        CHECK(worst(pg, pw) <= tol);
        if (config) CHECK(worst(bg, bw) <= tol);
      }
      CHECK(worst(pw, p0) > 0.05);  // the steps moved the parameters
    }
    for (bool decoupled : {false, true}) {  // Adam with L2 through the gradient; AdamW
      CAPTURE(decoupled);
      AdamStepArgs a;
      a.weight_decay = 0.05;
      a.decoupled_weight_decay = decoupled;
      Tensor pw = p0.clone(), pg = p0.clone();
      Tensor mw = zeros({n}), mg = zeros({n}), vw = zeros({n}), vg = zeros({n});
      for (int64_t t = 1; t <= 3; ++t) {
        const Tensor g = randn({n}, {.dtype = dt}, gen);
        a.lr = rates[t - 1];
        a.step = t;
        cpu::adam_step(pw.arg(), g.arg(), mw.arg(), vw.arg(), a);
        AdamStepArgs k = a;
        if (from_memory) {
          count.fill_(static_cast<double>(t));
          rate.fill_(a.lr);
          k.step = 1000;
          k.lr = 99;
        }
        const int64_t* step = from_memory ? count.data_ptr<int64_t>() : nullptr;
        const double* lr = from_memory ? rate.data_ptr<double>() : nullptr;
        launch_grid([&] {
          ok::adam_kernel<P>(pg.data_ptr<P>(), g.data_ptr<P>(), mg.data_ptr<float>(), vg.data_ptr<float>(), n,
                             AdamUpdate(k), step, lr);
        });
        CHECK(worst(pg, pw) <= tol);
        CHECK(worst(mg, mw) <= tol);
        CHECK(worst(vg, vw) <= tol);
      }
      CHECK(worst(pw, p0) > 0.05);
    }
  }
}

}  // namespace

TEST_CASE("the CUDA optimizer updates on the host emulator equal the CPU's: SGD, Nesterov, Adam, AdamW, f32 and bf16") {
  check_optimizers<float>();
  check_optimizers<bf16>();
}

// BLAS's column-major GEMM, as cuBLAS defines it: C (m, n) = op(A) (m, k) · op(B) (k, n),
// element (i, j) of a column-major matrix with leading dimension ld at i + j·ld.
void colmajor_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* A, int64_t lda, const double* B,
                   int64_t ldb, double* C, int64_t ldc) {
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < m; ++i) {
      double acc = 0;
      for (int64_t p = 0; p < k; ++p)
        acc += (ta ? A[p + i * lda] : A[i + p * lda]) * (tb ? B[j + p * ldb] : B[p + j * ldb]);
      C[i + j * ldc] = acc;
    }
}

TEST_CASE("cuBLAS's operands for row-major minidl matrices (cuda/gemm_layout.h): Cᵀ = Bᵀ·Aᵀ gives C = A·B") {
  // Each operand laid out four ways: row-major, padded rows, a transposed view, and
  // (for vectors) a strided column whose other stride is free.
  struct Layout {
    const char* name;
    bool transposed;
    int64_t pad;
  };
  const std::vector<Layout> layouts = {
      {"row-major", false, 0}, {"padded rows", false, 3}, {"transposed", true, 0}, {"transposed, padded", true, 2}};
  std::mt19937 rng(9);
  std::normal_distribution<double> normal;
  // Stored so that element (r, c) is at r·rs + c·cs.
  auto make = [&](int64_t rows, int64_t cols, const Layout& l, int64_t& rs, int64_t& cs) {
    std::vector<double> v(static_cast<size_t>((rows + 3) * (cols + 3)), std::nan(""));
    rs = l.transposed ? 1 : cols + l.pad;
    cs = l.transposed ? rows + l.pad : 1;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) v[r * rs + c * cs] = normal(rng);
    return v;
  };
  for (const std::array<int64_t, 3>& mnk :
       std::vector<std::array<int64_t, 3>>{{5, 7, 3}, {1, 6, 4}, {6, 1, 4}, {4, 5, 1}, {1, 1, 1}})
    for (const Layout& la : layouts)
      for (const Layout& lb : layouts) {
        const int64_t M = mnk[0], N = mnk[1], K = mnk[2];  // plain variables: clang cannot capture structured bindings
        CAPTURE(M);
        CAPTURE(N);
        CAPTURE(K);
        CAPTURE(la.name);
        CAPTURE(lb.name);
        int64_t ars, acs, brs, bcs;
        const std::vector<double> A = make(M, K, la, ars, acs), B = make(K, N, lb, brs, bcs);
        const cuda::CublasOperand a = cuda::cublas_operand(M, K, ars, acs), b = cuda::cublas_operand(K, N, brs, bcs);
        REQUIRE(a.usable);
        REQUIRE(b.usable);
        const int64_t ldc = N;  // C row-major (M, N), contiguous
        std::vector<double> C(static_cast<size_t>(M * N), std::nan(""));
        colmajor_gemm(b.transpose, a.transpose, N, M, K, B.data(), b.ld, A.data(), a.ld, C.data(), ldc);
        double worst_err = 0;
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j) {
            double want = 0;
            for (int64_t p = 0; p < K; ++p) want += A[i * ars + p * acs] * B[p * brs + j * bcs];
            const double err = std::abs(C[i * N + j] - want);
            worst_err = std::isnan(err) ? INFINITY : std::max(worst_err, err);  // NaN: an element read outside
          }
        CHECK(worst_err < 1e-12);
      }
  // Neither stride 1: not usable (the launcher copies it contiguous first).
  CHECK_FALSE(cuda::cublas_operand(4, 5, 10, 2).usable);
}

TEST_CASE("the strided-batched GEMM's one step per operand reproduces matmul's batch, or declines") {
  // Each operand's batch dims folded to one step (cuda/gemm_layout.h), then the
  // products run at i · step as cublasGemmStridedBatchedEx would: against matmul.
  Generator gen(14);
  auto check = [&](const Tensor& a, const Tensor& b, bool collapses) {
    CAPTURE(a.shape());
    CAPTURE(b.shape());
    const Tensor want = matmul(a, b);
    const int nb = static_cast<int>(want.dim()) - 2;
    const Shape batch(want.shape().begin(), want.shape().end() - 2);
    Shape as = batch, bs = batch;
    as.insert(as.end(), {a.size(-2), a.size(-1)});
    bs.insert(bs.end(), {b.size(-2), b.size(-1)});
    const TensorArg A = broadcast_arg(a, as), B = broadcast_arg(b, bs);
    int64_t sa = -1, sb = -1;
    const bool ok =
        cuda::batch_step(batch.data(), A.strides, nb, sa) && cuda::batch_step(batch.data(), B.strides, nb, sb);
    CHECK(ok == collapses);
    if (!ok) return;
    const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
    Tensor got = poisoned(want.shape(), DType::f64);
    for (int64_t i = 0; i < shape_numel(batch); ++i) {
      TensorArg Ai = A, Bi = B, Ci = got.arg();
      Ai.ndim = Bi.ndim = Ci.ndim = 2;
      Ai.data = A.ptr<double>() + i * sa, Bi.data = B.ptr<double>() + i * sb,
      Ci.data = got.data_ptr<double>() + i * M * N;
      Ai.shape[0] = M, Ai.shape[1] = K, Ai.strides[0] = A.strides[nb], Ai.strides[1] = A.strides[nb + 1];
      Bi.shape[0] = K, Bi.shape[1] = N, Bi.strides[0] = B.strides[nb], Bi.strides[1] = B.strides[nb + 1];
      Ci.shape[0] = M, Ci.shape[1] = N, Ci.strides[0] = N, Ci.strides[1] = 1;
      cpu::gemm(M, N, K, 1.0, Ai, Bi, 0.0, Ci);
    }
    CHECK(worst(got, want) <= 1e-12);
  };
  auto r = [&](const Shape& s) { return randn(s, {.dtype = DType::f64}, gen); };
  check(r({4, 3, 5}), r({4, 5, 2}), true);                         // plain batch
  check(r({2, 3, 4, 5}), r({2, 3, 5, 6}), true);                   // two batch dims, contiguous: one step
  check(r({3, 5}), r({4, 5, 2}), true);                            // A broadcast over the batch: step 0
  check(r({2, 1, 4, 5}), r({1, 3, 5, 2}), false);                  // broadcast inner under a real outer dim
  check(r({3, 2, 4, 5}).transpose(0, 1), r({2, 3, 5, 2}), false);  // a permuted batch
  check(r({1, 4, 3, 5}), r({4, 5, 2}), true);                      // a size-1 batch dim is skipped
}
