// tests/test_cuda.cpp — the CUDA backend against the CPU: every op, forward and
// backward, from the same random inputs.
//
// Its own binary, whose main() (tests/test_cuda_main.cpp) skips the whole file
// when no device is usable, and otherwise has the CUDA allocator fill every
// block it hands out with 0xFF bytes (NaN in the float types), so an output
// element a kernel forgot to write shows up as NaN in the comparison.
//
// Comparisons are ‖cuda − cpu‖ / ‖cpu‖ in f64, with thresholds that fit f32
// arithmetic summed in a different order (1e-5), f64 (1e-12), and exact
// equality for integers, booleans and argmax indices.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "compile/plan.h"
#include "compress/prune.h"
#include "compress/quantize.h"
#include "compress/sparse.h"
#include "compress/sparse_layers.h"
#include "cuda/kernels.h"
#include "minidl.h"

using namespace minidl;

namespace {

const Device kCuda("cuda:0");

double tolerance(DType t) { return t == DType::f64 ? 1e-12 : 1e-5; }

// ‖a − b‖ / ‖b‖ (‖a − b‖ alone when b is 0), both brought to the CPU in f64.
double relative_error(const Tensor& a, const Tensor& b) {
  NoGradGuard no_grad;
  const std::vector<double> x = a.to(kCPU).to(DType::f64).contiguous().to_vector<double>();
  const std::vector<double> y = b.to(kCPU).to(DType::f64).contiguous().to_vector<double>();
  REQUIRE(x.size() == y.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) != std::isnan(y[i])) return INFINITY;  // a NaN on one side only: a poisoned element
    if (std::isnan(x[i])) continue;
    diff += (x[i] - y[i]) * (x[i] - y[i]);
    norm += y[i] * y[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// f on the CPU inputs and on copies of them on the GPU: the outputs agree, and
// after a backward with the same random weighting so do the gradients of every
// floating input.
void check_parity(const std::string& name, const std::vector<Tensor>& inputs, const Fn& f, double tol = -1) {
  CAPTURE(name);
  std::vector<Tensor> host, device;
  for (const Tensor& t : inputs) {
    const bool grad = is_floating(t.dtype());
    host.push_back(grad ? t.detach().clone().requires_grad_(true) : t);
    device.push_back(grad ? t.detach().to(kCuda).requires_grad_(true) : t.to(kCuda));
  }
  const Tensor y_host = f(host), y_device = f(device);
  REQUIRE(y_device.device() == kCuda);
  REQUIRE(y_device.shape() == y_host.shape());
  if (tol < 0) tol = tolerance(y_host.dtype());
  CHECK(relative_error(y_device, y_host) <= tol);
  if (!is_floating(y_host.dtype())) return;
  Generator gen(99);
  const Tensor r = randn(y_host.shape(), {.dtype = y_host.dtype()}, gen);
  sum(mul(y_host, r)).backward();
  sum(mul(y_device, r.to(kCuda))).backward();
  for (size_t i = 0; i < host.size(); ++i) {
    if (!host[i].requires_grad() || !host[i].grad().defined()) continue;
    CAPTURE(i);
    REQUIRE(device[i].grad().defined());
    CHECK(relative_error(device[i].grad(), host[i].grad()) <= 10 * tol);
  }
}

Tensor normal(const Shape& shape, uint64_t seed, DType t = DType::f32) {
  Generator gen(seed);
  return randn(shape, {.dtype = t}, gen);
}

}  // namespace

TEST_CASE("device query") {
  CHECK(cuda::built_with_cuda());
  CHECK(cuda::device_count() >= 1);
  cuda::DeviceInfo info = cuda::device_info(0);
  MESSAGE("cuda:0 is " << info.name << ", sm_" << info.major << info.minor << ", " << info.multiprocessors
                       << " SMs, " << info.total_memory / (1 << 20) << " MiB");
  CHECK(info.major >= 5);
  CHECK(info.total_memory > 0);
  CHECK_THROWS_WITH_AS(cuda::device_info(cuda::device_count()), doctest::Contains("does not exist"), Error);
}

TEST_CASE("host <-> device copies keep every value, through strides, broadcasts and conversions") {
  Generator gen(1);
  Tensor x = randn({37, 129}, {.dtype = DType::f64}, gen);
  Tensor d = x.to(kCuda);
  CHECK(d.to(kCPU).to_vector<double>() == x.to_vector<double>());
  Tensor i = randint(-1000, 1000, {1000}, {}, gen);
  CHECK(i.to(kCuda).to(kCPU).to_vector<int64_t>() == i.to_vector<int64_t>());
  // A transposed view, either side of the boundary.
  CHECK(x.t().to(kCuda).to(kCPU).to_vector<double>() == x.t().contiguous().to_vector<double>());
  CHECK(d.t().to(kCPU).to_vector<double>() == x.t().contiguous().to_vector<double>());
  // Conversions on the device (the copy kernel), compared with the CPU's.
  for (DType t : {DType::f32, DType::bf16, DType::int32, DType::int64, DType::int8}) {
    CAPTURE(t);
    CHECK(relative_error(d.to(t), x.to(t)) == 0);
  }
  // Device -> device: strided destination, broadcast source, same storage.
  Tensor wide = zeros({4, 6}, {.dtype = DType::f32, .device = kCuda});
  wide.narrow(1, 2, 3).copy_(from_vector<float>({1, 2, 3}, {3}).to(kCuda));
  const std::vector<float> host = wide.to(kCPU).to_vector<float>();
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 6; ++c) CHECK(host[r * 6 + c] == (c >= 2 && c < 5 ? float(c - 1) : 0.0f));
  Tensor sq = normal({5, 5}, 2).to(kCuda);
  Tensor expected = sq.to(kCPU).t().contiguous();
  sq.copy_(sq.t());  // overlapping: read through a private copy
  CHECK(relative_error(sq, expected) == 0);
  // Host -> a strided device view.
  Tensor target = zeros({3, 8}, {.dtype = DType::f32, .device = kCuda});
  target.slice(1, 0, 8, 2).copy_(ones({3, 4}));
  CHECK(sum(target).item() == 12);
}

TEST_CASE("fill, also through a strided view, in every dtype") {
  for (DType t : kAllDTypes) {
    CAPTURE(t);
    Tensor d = full({5, 7}, 3, {.dtype = t, .device = kCuda});
    CHECK(d.to(kCPU).to(DType::f64).to_vector<double>() == std::vector<double>(35, 3.0));
  }
  Tensor d = zeros({4, 6}, {.dtype = DType::f32, .device = kCuda});
  d.narrow(1, 2, 3).fill_(1.5);
  CHECK(sum(d).item() == doctest::Approx(18.0));
}

TEST_CASE("unary ops, contiguous and transposed, f32 and f64") {
  for (DType t : {DType::f32, DType::f64}) {
    CAPTURE(t);
    const Tensor x = normal({37, 129}, 3, t), xt = normal({129, 37}, 4, t).t();
    const Tensor pos = add(abs(x), scalar_like(0.1, x));
    for (const Tensor& in : {x, xt}) {
      check_parity("neg", {in}, [](auto& v) { return neg(v[0]); });
      check_parity("exp", {in}, [](auto& v) { return exp(v[0]); });
      check_parity("abs", {in}, [](auto& v) { return abs(v[0]); });
      check_parity("relu", {in}, [](auto& v) { return relu(v[0]); });
      check_parity("leaky_relu", {in}, [](auto& v) { return leaky_relu(v[0], 0.1); });
      check_parity("sigmoid", {in}, [](auto& v) { return sigmoid(v[0]); });
      check_parity("tanh", {in}, [](auto& v) { return tanh(v[0]); });
      check_parity("gelu", {in}, [](auto& v) { return gelu(v[0]); });
      check_parity("clamp", {in}, [](auto& v) { return clamp(v[0], -0.5, 0.7); });
      check_parity("sign", {in}, [](auto& v) { return sign(v[0]); });
    }
    check_parity("log", {pos}, [](auto& v) { return log(v[0]); });
    check_parity("sqrt", {pos}, [](auto& v) { return sqrt(v[0]); });
    check_parity("pow scalar", {pos}, [](auto& v) { return pow(v[0], 1.7); });
  }
  Generator gen(5);
  const Tensor ints = randint(-50, 50, {300}, {}, gen);
  check_parity("neg int64", {ints}, [](auto& v) { return neg(v[0]); });
  check_parity("abs int64", {ints}, [](auto& v) { return abs(v[0]); });
  check_parity("logical_not", {ints}, [](auto& v) { return logical_not(v[0]); });
}

TEST_CASE("binary ops with broadcasting, comparisons and where") {
  for (DType t : {DType::f32, DType::f64}) {
    CAPTURE(t);
    const Tensor a = normal({5, 1, 7}, 6, t), b = normal({3, 7}, 7, t);
    const Tensor pa = add(abs(a), scalar_like(0.5, a)), pb = add(abs(b), scalar_like(0.5, b));
    check_parity("add", {a, b}, [](auto& v) { return add(v[0], v[1]); });
    check_parity("sub", {a, b}, [](auto& v) { return sub(v[0], v[1]); });
    check_parity("mul", {a, b}, [](auto& v) { return mul(v[0], v[1]); });
    check_parity("div", {a, pb}, [](auto& v) { return div(v[0], v[1]); });
    check_parity("pow", {pa, b}, [](auto& v) { return pow(v[0], v[1]); });
    check_parity("maximum", {a, b}, [](auto& v) { return maximum(v[0], v[1]); });
    check_parity("minimum", {a, b}, [](auto& v) { return minimum(v[0], v[1]); });
    check_parity("xlogy", {a, pb}, [](auto& v) { return xlogy(v[0], v[1]); });
    check_parity("lt", {a, b}, [](auto& v) { return lt(v[0], v[1]); });
    check_parity("ge", {a, b}, [](auto& v) { return ge(v[0], v[1]); });
    check_parity("where", {a, b}, [](auto& v) { return where(gt(v[0], v[1]), v[0], v[1]); });
  }
  Generator gen(8);
  const Tensor i = randint(-5, 5, {4, 9}, {}, gen), j = randint(-5, 5, {9}, {}, gen);
  check_parity("add int64", {i, j}, [](auto& v) { return add(v[0], v[1]); });
  check_parity("eq int64", {i, j}, [](auto& v) { return eq(v[0], v[1]); });
  check_parity("logical_and bool", {gt(i, 0.0), lt(j, 2.0)}, [](auto& v) { return logical_and(v[0], v[1]); });
}

TEST_CASE("reductions: sum, mean, var, logsumexp, max / argmax, over any dims and one long row") {
  for (DType t : {DType::f32, DType::f64}) {
    CAPTURE(t);
    const Tensor x = normal({6, 33, 17}, 9, t);
    check_parity("sum all", {x}, [](auto& v) { return sum(v[0]); });
    check_parity("sum dim 1", {x}, [](auto& v) { return sum(v[0], {1}); });
    check_parity("mean dims 0,2", {x}, [](auto& v) { return mean(v[0], {0, 2}); });
    check_parity("var", {x}, [](auto& v) { return var(v[0], {2}); });
    check_parity("logsumexp", {x}, [](auto& v) { return logsumexp(v[0], {1}); });
    check_parity("max", {x}, [](auto& v) { return max(v[0]); });
    check_parity("softmax dim 0", {x}, [](auto& v) { return softmax(v[0], 0); });
    // Few long rows: split across blocks, then combined (cuda/reduce_kernels.cuh).
    const Tensor long_row = normal({1 << 20}, 10, t);
    check_parity("sum of 2^20", {long_row}, [](auto& v) { return sum(v[0]); });
    check_parity("var of 2^20", {long_row}, [](auto& v) { return var(v[0]); });
    check_parity("logsumexp of 2^20", {long_row}, [](auto& v) { return logsumexp(v[0], {0}); });
    check_parity("max of 2^20", {long_row}, [](auto& v) { return max(v[0]); });
    const Tensor long_rows = normal({3, 100000}, 11, t);
    check_parity("argmin of 3 long rows", {long_rows}, [](auto& v) { return argmin(v[0], 1); });
    check_parity("mean of 3 long rows", {long_rows}, [](auto& v) { return mean(v[0], {1}); });
    // argmax: the same indices exactly (random data: no ties).
    check_parity("argmax", {x}, [](auto& v) { return argmax(v[0], 2); });
    check_parity("argmin", {x}, [](auto& v) { return argmin(v[0], 1); });
  }
}

TEST_CASE("gemm: cuBLAS and every hand-written version against the CPU, at awkward shapes and layouts") {
  struct Case {
    int64_t M, N, K;
    bool ta, tb;
  };
  const std::vector<Case> cases = {{1, 1, 1, false, false},    {17, 33, 65, false, false}, {127, 129, 255, false, true},
                                   {130, 260, 7, true, false}, {64, 128, 8, true, true},   {300, 5, 1000, false, false},
                                   {257, 255, 131, false, false}};
  for (const Case& c : cases) {
    CAPTURE(c.M);
    CAPTURE(c.N);
    CAPTURE(c.K);
    CAPTURE(c.ta);
    CAPTURE(c.tb);
    const Tensor a = c.ta ? normal({c.K, c.M}, 11).t() : normal({c.M, c.K}, 11);
    const Tensor b = c.tb ? normal({c.N, c.K}, 12).t() : normal({c.K, c.N}, 12);
    const Tensor bias = normal({c.N}, 13);
    const Tensor c0 = normal({c.M, c.N}, 14);
    // Reference in f64 on the CPU: 0.5·A·B + 2·C0 + bias, then ReLU.
    const Tensor ref = relu(add(add(mul(matmul(a.to(DType::f64), b.to(DType::f64)), scalar_tensor(0.5, {.dtype = DType::f64})),
                                    mul(c0.to(DType::f64), scalar_tensor(2.0, {.dtype = DType::f64}))),
                                bias.to(DType::f64)));
    const Tensor da = a.to(kCuda), db = b.to(kCuda), dbias = bias.to(kCuda);
    GemmEpilogue e;
    e.bias = dbias.raw_data();
    e.relu = true;
    auto run = [&](const std::function<void(const Tensor&)>& gemm_into) {
      Tensor out = c0.to(kCuda);
      gemm_into(out);
      return out;
    };
    if (!cuda::have_cublas()) MESSAGE("this build has no cuBLAS: its checks are left out");
    if (cuda::have_cublas()) {
      CHECK(relative_error(run([&](const Tensor& o) {
              cuda::gemm(c.M, c.N, c.K, 0.5, da.arg(), db.arg(), 2.0, o.arg(), cuda::GemmKernel::cublas, e);
            }),
                           ref) <= 1e-5);
    // The tensor-core options round the inputs (TF32: 10 mantissa bits, bf16: 7): looser.
    CHECK(relative_error(run([&](const Tensor& o) {
            cuda::gemm(c.M, c.N, c.K, 0.5, da.arg(), db.arg(), 2.0, o.arg(), cuda::GemmKernel::cublas_tf32, e);
          }),
                         ref) <= 5e-3);
    CHECK(relative_error(run([&](const Tensor& o) {
            cuda::gemm(c.M, c.N, c.K, 0.5, da.arg(), db.arg(), 2.0, o.arg(), cuda::GemmKernel::cublas_bf16, e);
          }),
                         ref) <= 3e-2);
    }
    for (int v = 1; v <= cuda::kSgemmVersions; ++v) {
      CAPTURE(v);
      CHECK(relative_error(run([&](const Tensor& o) {
              cuda::sgemm_handwritten(v, c.M, c.N, c.K, 0.5f, da.arg(), db.arg(), 2.0f, o.arg(), e);
            }),
                           ref) <= 1e-5);
    }
  }
  // f64 through cuBLAS, via matmul (batched and broadcast).
  if (cuda::have_cublas())  // f64 GEMM is cuBLAS's alone
    check_parity("matmul f64 batched", {normal({3, 20, 30}, 15, DType::f64), normal({30, 10}, 16, DType::f64)},
                 [](auto& v) { return matmul(v[0], v[1]); });
  check_parity("matmul f32", {normal({50, 70}, 17), normal({70, 40}, 18)}, [](auto& v) { return matmul(v[0], v[1]); });
  check_parity("linear + bias + relu", {normal({32, 100}, 19), normal({64, 100}, 20), normal({64}, 21)},
               [](auto& v) { return linear(v[0], v[1], v[2], Activation::relu); });
  // The cuBLASLt epilogue (bias, ReLU, both) at awkward sizes, batch 1 included,
  // beside the two-pass path it replaces (the hand-written kernel's epilogue).
  for (const auto& shape : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 10, 784}, {7, 3, 5}, {129, 65, 33}}) {
    const int64_t n = std::get<0>(shape), out = std::get<1>(shape), in = std::get<2>(shape);  // (clang: no CAPTURE of bindings)
    CAPTURE(n);
    CAPTURE(out);
    const Tensor x = normal({n, in}, 22), w = normal({out, in}, 23), b = normal({out}, 24);
    check_parity("linear + bias", {x, w, b}, [](auto& v) { return linear(v[0], v[1], v[2]); });
    check_parity("linear + relu", {x, w}, [](auto& v) { return linear(v[0], v[1], Tensor(), Activation::relu); });
    check_parity("linear + bias + relu", {x, w, b}, [](auto& v) { return linear(v[0], v[1], v[2], Activation::relu); });
  }
  CHECK_THROWS_WITH_AS(cuda::sgemm_handwritten(9, 2, 2, 2, 1, normal({2, 2}, 1).to(kCuda).arg(),
                                               normal({2, 2}, 1).to(kCuda).arg(), 0, zeros({2, 2}, {.dtype = DType::f32, .device = kCuda}).arg()),
                       doctest::Contains("version 9 does not exist"), Error);
}

TEST_CASE("conv2d: stride, padding, dilation, groups, bias and fused ReLU, forward and backward") {
  struct Case {
    int64_t N, C, H, W, O, k;
    Conv2dOptions o;
    bool relu;
  };
  const std::vector<Case> cases = {
      {2, 3, 9, 11, 4, 3, {}, false},
      {3, 4, 10, 10, 6, 3, {.stride = {2, 1}, .padding = {1, 2}}, true},
      {2, 4, 12, 9, 4, 3, {.padding = {2, 2}, .dilation = {2, 2}, .groups = 2}, false},
      {1, 6, 7, 7, 6, 1, {.groups = 3}, true},
      // 16·28·28 = 12 544 gradient values per output channel: the bias
      // gradient splits each channel across blocks (cuda/conv_kernels.cuh)
      {16, 1, 28, 28, 8, 3, {.padding = {1, 1}}, true},
  };
  for (DType t : {DType::f32, DType::f64}) {
    if (t == DType::f64 && !cuda::have_cublas()) continue;  // its GEMMs need cuBLAS
    for (const Case& c : cases) {
      CAPTURE(t);
      CAPTURE(c.C);
      const Tensor x = normal({c.N, c.C, c.H, c.W}, 22, t), w = normal({c.O, c.C / c.o.groups, c.k, c.k}, 23, t);
      const Tensor b = normal({c.O}, 24, t);
      check_parity("conv2d", {x, w, b}, [&](auto& v) {
        return conv2d(v[0], v[1], v[2], c.o, c.relu ? Activation::relu : Activation::none);
      });
    }
  }
  // 100 samples whose columns (288 · 784 floats each) do not fit one chunk of
  // 64 MiB: chunks of 74 and 26 samples (cuda/conv_kernels.cuh), two groups.
  const Tensor x = normal({100, 32, 28, 28}, 25), w = normal({16, 16, 3, 3}, 26), b = normal({16}, 27);
  check_parity("conv2d in two chunks", {x, w, b}, [&](auto& v) {
    return conv2d(v[0], v[1], v[2], {.padding = {1, 1}, .groups = 2}, Activation::relu);
  });
}

TEST_CASE("pooling: max (padded, overlapping), avg (with and without the padding), adaptive") {
  for (DType t : {DType::f32, DType::f64}) {
    CAPTURE(t);
    const Tensor x = normal({2, 3, 11, 10}, 25, t);
    check_parity("max 2x2", {x}, [](auto& v) { return max_pool2d(v[0], {2, 2}); });
    check_parity("max 3x3 stride 1 pad 1", {x}, [](auto& v) { return max_pool2d(v[0], {3, 3}, {1, 1}, {1, 1}); });
    check_parity("avg 3x3 stride 2 pad 1", {x}, [](auto& v) { return avg_pool2d(v[0], {3, 3}, {2, 2}, {1, 1}); });
    check_parity("avg without pad", {x}, [](auto& v) { return avg_pool2d(v[0], {3, 3}, {2, 2}, {1, 1}, false); });
    check_parity("adaptive 4x3", {x}, [](auto& v) { return adaptive_avg_pool2d(v[0], {4, 3}); });
  }
}

TEST_CASE("batch norm: training (batch statistics, running stats updated) and eval") {
  // (8, 5, 6, 7): a block per channel; (64, 3, 20, 20): 25 600 values per
  // channel, each channel split across 7 blocks (cuda/norm_kernels.cuh).
  for (const Shape& shape : {Shape{8, 5, 6, 7}, Shape{64, 3, 20, 20}})
  for (DType t : {DType::f32, DType::f64}) {
    CAPTURE(t);
    CAPTURE(shape[0]);
    const int64_t C = shape[1];
    const Tensor x = normal(shape, 26, t), w = normal({C}, 27, t), b = normal({C}, 28, t);
    for (bool training : {true, false}) {
      CAPTURE(training);
      Tensor rm_h = normal({C}, 29, t), rv_h = add(abs(normal({C}, 30, t)), scalar_tensor(0.5, {.dtype = t}));
      Tensor rm_d = rm_h.to(kCuda), rv_d = rv_h.to(kCuda);
      check_parity("batch_norm", {x, w, b}, [&](auto& v) {
        const bool on_cuda = v[0].device().is_cuda();
        return batch_norm(v[0], on_cuda ? rm_d : rm_h, on_cuda ? rv_d : rv_h, v[1], v[2], training);
      });
      CHECK(relative_error(rm_d, rm_h) <= tolerance(t));
      CHECK(relative_error(rv_d, rv_h) <= tolerance(t));
    }
  }
}

TEST_CASE("dropout: the GPU draws the CPU's mask from the same generator, exactly, and its gradient") {
  for (DType t : {DType::f32, DType::f64, DType::bf16}) {
    CAPTURE(t);
    const Tensor x = normal({33, 257}, 31, t);
    for (double p : {0.1, 0.5}) {
      CAPTURE(p);
      Generator gh(7), gd(7);
      const Tensor host = dropout(x, p, true, gh), device = dropout(x.to(kCuda), p, true, gd);
      CHECK(relative_error(device, host) == 0);  // same key, same counter-based bits, same mask
    }
    if (t == DType::bf16) continue;
    check_parity("dropout", {x}, [&](auto& v) {
      Generator gen(9);
      return dropout(v[0], 0.3, true, gen);
    }, 0);
  }
  // A captured draw would repeat at every replay: refused, saying why.
  const Tensor xd = normal({64}, 32).to(kCuda);
  CHECK_THROWS_WITH_AS(cuda::Graph([&] { (void)dropout(xd, 0.5, true); }), doctest::Contains("dropout"), Error);
}

TEST_CASE("sparse_linear on the GPU: the hand-written CSR kernel and cuSPARSE against the CPU") {
  NoGradGuard no_grad;
  Generator gen(51);
  for (double sparsity : {0.5, 0.9, 0.99}) {
    Tensor w = randn({300, 784}, {}, gen);
    w = mul(w, ge(rand({300, 784}, {}, gen), scalar_tensor(sparsity)).to(DType::f32));
    w.narrow(0, 7, 1).fill_(0.0);  // an empty row
    const auto host = compress::SparseMatrix::from_dense(w);
    const auto device = host.to(kCuda);
    const Tensor bias = randn({300}, {}, gen);
    for (int64_t N : {1, 7, 64, 129}) {
      for (auto kernel : {cuda::SpmmKernel::handwritten, cuda::SpmmKernel::cusparse}) {
        if (kernel == cuda::SpmmKernel::cusparse && !cuda::have_cusparse()) continue;
        CAPTURE(sparsity);
        CAPTURE(N);
        CAPTURE(cuda::spmm_kernel_name(kernel));
        const Tensor x = randn({N, 784}, {}, gen);
        const Tensor want = compress::sparse_linear(x, host, bias, Activation::relu);
        const Tensor got = compress::sparse_linear(x.to(kCuda), device, bias.to(kCuda), Activation::relu,
                                                   cpu::SpmmKernel::best, kernel);
        CHECK(relative_error(got, want) <= 1e-5);
        // A transposed view's rows are strided: made contiguous first, same answer.
        const Tensor xt = x.t().contiguous().to(kCuda).t();
        CHECK(relative_error(compress::sparse_linear(xt, device, Tensor(), Activation::none, cpu::SpmmKernel::best,
                                                     kernel),
                             compress::sparse_linear(x, host)) <= 1e-5);
      }
    }
  }
  const auto host = compress::SparseMatrix::from_dense(randn({8, 16}, {}, gen));
  CHECK_THROWS_WITH_AS(compress::sparse_linear(ones({2, 16}).to(kCuda), host), doctest::Contains("move the weight"),
                       Error);
  // A pruned mlp made sparse moves to the GPU as a model and gives the CPU's logits.
  auto model = nn::build_model("mlp", gen);
  model->eval();
  compress::Pruner pruner(*model);
  pruner.global_unstructured({"1.weight", "3.weight", "5.weight"}, compress::Amount::fraction(0.9));
  compress::to_sparse(*model, compress::SparseFormat::csr());
  const Tensor x = rand({16, 1, 28, 28}, {}, gen);
  const Tensor want = model->forward(x);
  model->to(kCuda);
  CHECK(relative_error(model->forward(x.to(kCuda)), want) <= 1e-5);
}

TEST_CASE("int8 dynamic quantization on the GPU: the CPU's int8 layer bit for bit, a quantized model, its graph") {
  NoGradGuard no_grad;
  Generator gen(71);
  // (M, N, K): one sample; a large layer of the mlp; tails in every dimension.
  for (const auto& [M, N, K] : std::vector<std::array<int64_t, 3>>{{1, 10, 7}, {256, 512, 784}, {129, 65, 130}}) {
    const int64_t m = M, n = N, k = K;  // clang cannot CAPTURE a structured binding
    CAPTURE(m);
    CAPTURE(n);
    CAPTURE(k);
    const Tensor w = randn({N, K}, {}, gen), bias = randn({N}, {}, gen);
    for (bool per_channel : {true, false}) {
      CAPTURE(per_channel);
      const QuantizedWeight q = quantize_weight_int8(w, per_channel);
      const Int8Weight host = pack_int8_weight(q.values, q.scale);
      const Int8Weight device = pack_int8_weight(q.values.to(kCuda), q.scale.to(kCuda));
      REQUIRE(device.device() == kCuda);
      for (bool relu : {false, true}) {
        CAPTURE(relu);
        const Tensor x = relu ? minidl::relu(randn({M, K}, {}, gen)) : randn({M, K}, {}, gen);
        const Activation act = relu ? Activation::relu : Activation::none;
        const Tensor want = quantized_linear(x, host, bias, act);
        const Tensor got = quantized_linear(x.to(kCuda), device, bias.to(kCuda), act);
        REQUIRE(got.device() == kCuda);
        CHECK(got.to(kCPU).to_vector<float>() == want.to_vector<float>());
      }
    }
  }
  const QuantizedWeight q = quantize_weight_int8(randn({6, 9}, {}, gen));
  const Int8Weight device = pack_int8_weight(q.values.to(kCuda), q.scale.to(kCuda));
  Tensor x = randn({4, 9}, {}, gen);
  x.narrow(0, 2, 1).narrow(1, 3, 1).fill_(std::numeric_limits<double>::quiet_NaN());
  for (float v : quantized_linear(x.to(kCuda), device).to(kCPU).to_vector<float>()) CHECK(std::isnan(v));
  CHECK_THROWS_WITH_AS(quantized_linear(x, device), doctest::Contains("the int8 weight on cuda:0"), Error);

  // A quantized mlp moves to the GPU as a model (each QuantLinear packs again
  // for it), gives the CPU's logits exactly, eagerly and as a CUDA graph, and back.
  auto model = nn::build_model("mlp", gen);
  model->eval();
  compress::quantize_dynamic(*model);
  const Tensor images = rand({16, 1, 28, 28}, {}, gen);
  const Tensor want = model->forward(images);
  model->to(kCuda);
  CHECK(model->forward(images.to(kCuda)).to(kCPU).to_vector<float>() == want.to_vector<float>());
  Plan plan = compile(*model, images.to(kCuda));
  CHECK(plan.run(images.to(kCuda)).to(kCPU).to_vector<float>() == want.to_vector<float>());
  model->to(kCPU);
  CHECK(model->forward(images).to_vector<float>() == want.to_vector<float>());
}

TEST_CASE("softmax, log_softmax and the fused losses, short rows and long ones, in both row layouts") {
  Generator gen(31);
  // The layout the length picks (a warp per row up to 1024 columns), and each forced at every length.
  const cuda::KeepRowLayout keep;  // the layouts forced below are undone on the way out
  for (cuda::RowLayout layout : {cuda::RowLayout::automatic, cuda::RowLayout::warp, cuda::RowLayout::block}) {
    for (DType t : {DType::f32, DType::f64}) {
      for (int64_t classes : {10, 37, 1000, 32000}) {
        cuda::set_row_layout(layout);
        CAPTURE(static_cast<int>(layout));
        CAPTURE(t);
        CAPTURE(classes);
        const int64_t rows = classes == 32000 ? 8 : 64;
        const Tensor s = mul(normal({rows, classes}, 32, t), scalar_tensor(3.0, {.dtype = t}));
        const Tensor te = mul(normal({rows, classes}, 33, t), scalar_tensor(3.0, {.dtype = t}));
        Tensor y = randint(0, classes, {rows}, {}, gen);
        check_parity("softmax", {s}, [](auto& v) { return softmax(v[0], 1); });
        check_parity("log_softmax", {s}, [](auto& v) { return log_softmax(v[0], 1); });
        check_parity("cross_entropy", {s, y}, [](auto& v) { return cross_entropy(v[0], v[1]); });
        const Tensor weight = add(abs(normal({classes}, 34, t)), scalar_tensor(0.1, {.dtype = t}));
        Tensor y_ignored = y.clone();
        y_ignored.narrow(0, 0, 3).fill_(-100);
        check_parity("cross_entropy weighted, smoothed, ignoring", {s, y_ignored, weight},
                     [](auto& v) { return cross_entropy(v[0], v[1], {.weight = v[2], .label_smoothing = 0.1}); });
        check_parity("kl_div_logits", {s, te}, [](auto& v) { return kl_div_logits(v[0], v[1], 4.0); });
        check_parity("distillation_loss", {s, te, y}, [](auto& v) {
          return distillation_loss(v[0], v[1].detach(), v[2], {.temperature = 2.0, .alpha = 0.7});  // a fixed teacher
        });
      }
    }
  }
  // A bad target is found on the device and raised once, naming it.
  const Tensor logits = normal({4, 10}, 35).to(kCuda);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, from_vector<int64_t>({1, 2, 10, 3}, {4}).to(kCuda)),
                       doctest::Contains("target 10 (at position 2) is out of range for 10 classes"), Error);
}

TEST_CASE("index ops: index_select (and its index_add backward), gather, scatter_add; bad indices") {
  Generator gen(36);
  for (DType t : {DType::f32, DType::f64}) {
    CAPTURE(t);
    const Tensor x = normal({6, 9, 4}, 37, t);
    const Tensor idx = from_vector<int64_t>({8, 0, 3, 3, 5}, {5});  // a repeat: the backward adds twice
    check_parity("index_select dim 1", {x, idx}, [](auto& v) { return index_select(v[0], 1, v[1]); });
    const Tensor gidx = randint(0, 9, {6, 5, 4}, {}, gen);
    check_parity("gather dim 1", {x, gidx}, [](auto& v) { return gather(v[0], 1, v[1]); });
    const Tensor src = normal({6, 5, 4}, 38, t);
    check_parity("scatter_add dim 1", {x, gidx, src}, [](auto& v) { return scatter_add(v[0], 1, v[1], v[2]); });
  }
  const Tensor x = normal({4, 3}, 41).to(kCuda);
  CHECK_THROWS_WITH_AS(index_select(x, 0, from_vector<int64_t>({0, 4}, {2}).to(kCuda)), doctest::Contains("4"), Error);
}

TEST_CASE("optimizer updates: SGD (momentum, Nesterov, weight decay), Adam and AdamW, five steps") {
  auto run = [](Device device, const std::string& opt) {
    Tensor p = normal({1000}, 39).to(device).requires_grad_(true);
    std::unique_ptr<nn::Optimizer> o;
    if (opt == "sgd") o = std::make_unique<nn::SGD>(std::vector<Tensor>{p}, nn::SGDOptions{.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
    if (opt == "adam") o = std::make_unique<nn::Adam>(std::vector<Tensor>{p}, nn::AdamOptions{.lr = 0.01, .weight_decay = 0.01});
    if (opt == "adamw") o = std::make_unique<nn::AdamW>(std::vector<Tensor>{p}, nn::AdamOptions{.lr = 0.01, .weight_decay = 0.1});
    for (int step = 0; step < 5; ++step) {
      o->zero_grad();
      sum(mul(mul(p, p), normal({1000}, 40 + step).to(device))).backward();
      o->step();
    }
    return p.detach().to(kCPU);
  };
  for (const char* opt : {"sgd", "adam", "adamw"}) {
    CAPTURE(opt);
    CHECK(relative_error(run(kCuda, opt), run(kCPU, opt)) <= 1e-5);
  }
  // Gradient clipping: the same norm and the same scaled gradients (the norm
  // added up on the device, read back once).
  auto clipped = [](Device device) {
    std::vector<Tensor> ps;
    for (int i = 0; i < 3; ++i) {
      ps.push_back(normal({100 + 50 * i}, 60 + i).to(device).requires_grad_(true));
      sum(mul(ps.back(), normal({100 + 50 * i}, 70 + i).to(device))).backward();
    }
    const double norm = nn::clip_grad_norm(ps, 1.0);
    return std::make_pair(norm, cat({ps[0].grad(), ps[1].grad(), ps[2].grad()}).to(kCPU));
  };
  const auto [norm_gpu, grads_gpu] = clipped(kCuda);
  const auto [norm_cpu, grads_cpu] = clipped(kCPU);
  CHECK(norm_gpu == doctest::Approx(norm_cpu).epsilon(1e-6));
  CHECK(norm_cpu > 1.0);  // so the gradients were scaled
  CHECK(relative_error(grads_gpu, grads_cpu) <= 1e-5);
}

TEST_CASE("the caching allocator: a repeated step makes no cudaMalloc; empty_cache returns the cache") {
  auto step = [] {
    Tensor x = normal({256, 784}, 42).to(kCuda);
    Tensor w = normal({128, 784}, 43).to(kCuda).requires_grad_(true);
    sum(relu(linear(x, w))).backward();
  };
  step();
  const AllocatorStats before = cuda::allocator_stats(0);
  for (int i = 0; i < 3; ++i) step();
  const AllocatorStats after = cuda::allocator_stats(0);
  CHECK(after.cache_misses == before.cache_misses);  // every block came from the cache
  CHECK(after.cache_hits > before.cache_hits);
  CHECK(after.peak_bytes_in_use >= after.bytes_in_use);
  cuda::empty_cache(0);
  CHECK(cuda::allocator_stats(0).bytes_cached == 0);
}

TEST_CASE("a short training run on the GPU reaches the CPU's accuracy (same seed, same data order)") {
  const nn::ImageDataset train = nn::load_mnist_format(nn::kFashionMnistDir, "train").subset(3000);
  const nn::ImageDataset test = nn::load_mnist_format(nn::kFashionMnistDir, "t10k").subset(1000);
  auto accuracy_on = [&](const std::string& model, const std::string& device) {
    nn::TrainConfig c{.model = model, .epochs = 1, .batch = 64, .seed = 2, .device = device};
    nn::Trainer trainer(nn::build_model(c), c);
    return trainer.run_epoch(train, test).test.accuracy;
  };
  for (const char* model : {"mlp-small", "cnn"}) {
    CAPTURE(model);
    const double cpu = accuracy_on(model, "cpu"), gpu = accuracy_on(model, "cuda");
    MESSAGE(model << ": cpu " << cpu << ", cuda " << gpu);
    CHECK(gpu > 0.6);
    CHECK(std::abs(gpu - cpu) < 0.02);
  }
}

TEST_CASE("a CUDA graph of a training step replays it: the same updates as running it again") {
  // Two identical models: one steps eagerly, the other through a graph's replays.
  // Adam's bias corrections depend on the step count, which the replays must
  // advance (it lives on the device), and the learning rate changes between
  // steps (it lives there too), so the two stay equal step after step.
  auto make = [] {
    Generator gen(44);
    auto model = nn::build_model("mlp-small", gen);
    model->to(kCuda);
    return model;
  };
  auto eager = make(), replayed = make();
  nn::AdamW opt_eager(eager->named_parameters(), {.lr = 1e-2}), opt_replayed(replayed->named_parameters(), {.lr = 1e-2});
  Generator gen(45);
  const Tensor x = normal({64, 1, 28, 28}, 45).to(kCuda);
  const Tensor y = randint(0, 10, {64}, {}, gen).to(kCuda);
  auto step_of = [&](nn::Module& model, nn::Optimizer& opt) {
    return [&] {
      Tensor loss = cross_entropy(model(x), y);
      opt.zero_grad();
      loss.backward();
      opt.step();
    };
  };
  auto snapshot = [](nn::Module& model) {
    std::map<std::string, std::vector<float>> out;
    for (const auto& [name, t] : model.state_dict()) out[name] = t.to(kCPU).to_vector<float>();
    return out;
  };
  const std::function<void()> step_eager = step_of(*eager, opt_eager), step_replayed = step_of(*replayed, opt_replayed);
  step_eager();
  step_replayed();  // uncaptured first (index checks, optimizer state, cuBLAS)
  const auto start = snapshot(*replayed);
  cuda::Graph graph(step_replayed);  // the capture does not run the step
  CHECK(snapshot(*replayed) == start);
  for (int i = 0; i < 5; ++i) {
    // A schedule between replays: the rate lives on the device too, so a replay
    // uses the one set last, as the eager step does.
    const double lr = 1e-2 / (i + 2);
    opt_eager.set_lr(lr);
    opt_replayed.set_lr(lr);
    graph.replay();
    step_eager();
  }
  cuda::synchronize(0);
  CHECK(opt_eager.steps() == 6);
  CHECK(opt_replayed.steps() == 6);  // the replays advanced the device's count
  const auto now = snapshot(*replayed), want = snapshot(*eager);
  double moved = 0;
  for (const auto& entry : now) {
    const std::string& name = entry.first;  // a plain reference: clang cannot CAPTURE a structured binding
    const std::vector<float>& v = entry.second;
    CAPTURE(name);
    const Tensor got = from_vector(v, {static_cast<int64_t>(v.size())}),
                 ref = from_vector(want.at(name), {static_cast<int64_t>(v.size())});
    CHECK(relative_error(got, ref) <= 1e-6);
    for (size_t i = 0; i < v.size(); ++i) moved += std::abs(v[i] - start.at(name)[i]);
  }
  CHECK(moved > 0);  // the replays trained
  // A host read inside a capture is refused, clearly; so is a learning rate set
  // there (it would be frozen into the graph).
  CHECK_THROWS_WITH_AS(cuda::Graph([&] { (void)sum(x).item(); }), doctest::Contains("cuda graph"), Error);
  CHECK_THROWS_WITH_AS(cuda::Graph([&] { opt_replayed.set_lr(1e-3); }), doctest::Contains("being captured"), Error);
}

TEST_CASE("bf16 Linear on the GPU: cuBLAS and the hand-written kernel against the CPU's, a bf16 model, its graph") {
  NoGradGuard no_grad;
  Generator gen(73);
  std::vector<cuda::GemmKernel> kernels = {cuda::GemmKernel::handwritten};
  if (cuda::have_cublas()) kernels.push_back(cuda::GemmKernel::cublas);
  for (const auto& [M, N, K] : std::vector<std::array<int64_t, 3>>{{1, 10, 7}, {256, 512, 784}, {129, 65, 130}}) {
    const int64_t m = M, n = N, k = K;  // clang cannot CAPTURE a structured binding
    CAPTURE(m);
    CAPTURE(n);
    CAPTURE(k);
    const Tensor x = randn({M, K}, {}, gen).to(DType::bf16), w = randn({N, K}, {}, gen).to(DType::bf16);
    const Tensor bias = randn({N}, {}, gen);
    const Tensor xd = x.to(kCuda), wd = w.to(kCuda), bd = bias.to(kCuda);
    for (bool relu : {false, true}) {
      CAPTURE(relu);
      const Activation act = relu ? Activation::relu : Activation::none;
      // f32 out: the CPU's f32 sums, in another order.
      const Tensor want32 = linear_bf16(x, pack_bf16_weight(w), bias, act, true);
      for (cuda::GemmKernel kernel : kernels) {
        CAPTURE(cuda::linear_bf16_kernel_name(kernel));
        Tensor got = empty({M, N}, {.dtype = DType::f32, .device = kCuda});
        cuda::Bf16LinearArgs a;
        a.x = static_cast<const uint16_t*>(xd.raw_data()), a.w = static_cast<const uint16_t*>(wd.raw_data());
        a.M = M, a.N = N, a.K = K, a.bias = bd.data_ptr<float>(), a.relu = relu;
        a.y = got.data_ptr<float>(), a.ldy = N;
        cuda::linear_bf16(a, kernel);
        CHECK(relative_error(got, want32) <= 1e-5);
      }
      // Through linear(): bf16 out, rounded once; a sum near a rounding boundary may round the other way.
      const Tensor got16 = linear(xd, wd, bias.to(DType::bf16).to(kCuda), act);
      REQUIRE(got16.dtype() == DType::bf16);
      CHECK(relative_error(got16, linear(x, w, bias.to(DType::bf16), act)) <= 4e-3);
    }
  }
  CHECK_THROWS_WITH_AS(linear(randn({2, 3}, {}, gen).to(DType::bf16).to(kCuda).requires_grad_(true),
                              randn({4, 3}, {}, gen).to(DType::bf16).to(kCuda)),
                       doctest::Contains("inference only"), Error);

  // A bf16 cnn (its convolutions and batch norm through f32, as on the CPU) on
  // the GPU: the CPU's logits to bf16's precision, and its graph gives eager's.
  for (const char* name : {"mlp", "cnn"}) {
    CAPTURE(name);
    auto model = nn::build_model(name, gen);
    model->eval();
    model->to(DType::bf16);
    const Tensor images = rand({16, 1, 28, 28}, {}, gen).to(DType::bf16);
    const Tensor want = model->forward(images);
    model->to(kCuda);
    const Tensor eager = model->forward(images.to(kCuda));
    CHECK(relative_error(eager, want) <= 2e-2);
    Plan plan = compile(*model, images.to(kCuda));
    CHECK(relative_error(plan.run(images.to(kCuda)), eager) <= 1e-6);
  }
}

TEST_CASE("compile on the GPU: the forward as one CUDA graph gives eager's logits for new inputs") {
  NoGradGuard no_grad;
  for (const char* name : {"mlp", "cnn", "resnet-s"}) {
    CAPTURE(name);
    Generator gen(61);
    auto model = nn::build_model(name, gen);
    model->eval();
    model->to(kCuda);
    const Tensor example = rand({8, 1, 28, 28}, {}, gen).to(kCuda);
    Plan plan = compile(*model, example);
    CHECK(plan.describe().find("CUDA graph") != std::string::npos);
    for (int i = 0; i < 3; ++i) {
      const Tensor x = rand({8, 1, 28, 28}, {}, gen).to(kCuda);
      CHECK(relative_error(plan.run(x), model->forward(x)) <= 1e-6);
    }
    CHECK_THROWS_WITH_AS(plan.run(rand({4, 1, 28, 28}, {}, gen).to(kCuda)), doctest::Contains("compile the model again"),
                         Error);
    CHECK_THROWS_WITH_AS(plan.run(rand({8, 1, 28, 28}, {}, gen)), doctest::Contains("on cuda:0"), Error);
  }
}

TEST_CASE("mixed devices are a clear error") {
  Tensor d = ones({3}, {.dtype = DType::f32, .device = kCuda});
  CHECK_THROWS_WITH_AS(add(d, ones({3})), "add: expected all tensors on the same device, got cuda:0 and cpu", Error);
}
