// tests/test_cpu_paths.cpp — every CPU kernel path this machine runs (generic,
// avx2, avx512), forced one at a time, against the reference twins; the paths
// the machine lacks are named as skipped; and the helpers that split a loop among threads.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "minidl.h"
#include "nn/models.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"

using namespace minidl;
using cpu::CpuPath;

namespace {
// max |a − b| / (max |b| + 1)
double rel_error(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  REQUIRE(x.size() == y.size());
  double worst = 0, scale = 1;
  for (size_t i = 0; i < x.size(); ++i)
    worst = std::max(worst, std::abs(x[i] - y[i])), scale = std::max(scale, std::abs(y[i]));
  return worst / scale;
}

// Naive f64 2×2/stride-2 max pooling of (N, C, H, W).
Tensor max_pool_reference(const Tensor& x) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  std::vector<double> v = x.to_vector<double>(), out;
  for (int64_t p = 0; p < N * C; ++p)
    for (int64_t i = 0; i + 1 < H; i += 2)
      for (int64_t j = 0; j + 1 < W; j += 2) {
        const double* plane = v.data() + p * H * W;
        out.push_back(std::max(std::max(plane[i * W + j], plane[i * W + j + 1]),
                               std::max(plane[(i + 1) * W + j], plane[(i + 1) * W + j + 1])));
      }
  return from_vector<double>(out, {N, C, H / 2, W / 2});
}
}  // namespace

TEST_CASE("each CPU path this machine has matches the reference kernels") {
  MESSAGE("CPU: " << cpu::cpu_summary());
  int ran = 0;
  for (CpuPath path : {CpuPath::generic, CpuPath::avx2, CpuPath::avx512}) {
    CAPTURE(cpu::cpu_path_name(path));
    if (!cpu::cpu_path_supported(path)) {
      MESSAGE("skipped CPU path " << std::string(cpu::cpu_path_name(path)) << ": this CPU lacks it");
      continue;
    }
    cpu::ScopedCpuPath forced(path);
    REQUIRE(cpu::cpu_path() == path);
    ++ran;
    Generator gen(11);
    // GEMM through the op (the "best" kernel is the path's), odd shapes.
    for (auto [M, N, K] : {std::array<int64_t, 3>{1, 1, 1}, {7, 33, 17}, {129, 65, 300}, {3, 1000, 64}}) {
      Tensor a = randn({M, K}, {}, gen), b = randn({K, N}, {}, gen);
      Tensor want = matmul(a.to(DType::f64), b.to(DType::f64));
      CHECK(rel_error(matmul(a, b), want) < 1e-5);
    }
    // Max pooling (the 2×2 kernel runs only on the avx512 path), even and odd widths.
    for (int64_t w : {28, 14, 34, 9}) {
      Tensor x = randn({2, 3, 8, w}, {}, gen);
      CHECK(rel_error(max_pool2d(x, {2, 2}, {2, 2}, {0, 0}), max_pool_reference(x)) == 0);
    }
    // A whole cnn forward and backward (conv, fused ReLU, pool, linear, CE) at this
    // path, against the generic path on the same weights and batch.
    auto m = nn::build_model("cnn");
    Tensor x = randn({4, 1, 28, 28}, {}, gen);
    Tensor labels = from_vector<int64_t>({1, 5, 9, 0}, {4});
    Tensor loss = cross_entropy(m->forward(x), labels);
    loss.backward();
    Tensor conv_grad = m->named_parameters()[0].second.grad();
    REQUIRE(conv_grad.defined());
    CHECK(std::isfinite(loss.item()));
    Tensor loss_generic, grad_generic;
    {
      cpu::ScopedCpuPath generic(CpuPath::generic);
      auto g = nn::build_model("cnn");
      g->load_state_dict(m->state_dict());
      loss_generic = cross_entropy(g->forward(x), labels);
      loss_generic.backward();
      grad_generic = g->named_parameters()[0].second.grad();
    }
    CHECK(std::abs(loss.item() - loss_generic.item()) < 1e-5 * (1 + std::abs(loss_generic.item())));
    CHECK(rel_error(conv_grad, grad_generic) < 1e-4);
  }
  CHECK(ran >= 1);
}

TEST_CASE("MINIDL_CPU names a path; a path the CPU lacks is refused") {
  for (CpuPath path : {CpuPath::generic, CpuPath::avx2, CpuPath::avx512}) {
    if (cpu::cpu_path_supported(path)) continue;
    CHECK_THROWS_WITH_AS(cpu::ScopedCpuPath{path}, doctest::Contains("lacks"), Error);
  }
  CHECK(cpu::supported_cpu_paths().front() == CpuPath::generic);
  CHECK(cpu::cpu_summary().find("using ") != std::string::npos);
}

#ifdef _OPENMP
namespace {
// Sets the OpenMP team size for one scope.
struct ScopedThreads {
  int previous = omp_get_max_threads();
  explicit ScopedThreads(int n) { omp_set_num_threads(n); }
  ~ScopedThreads() { omp_set_num_threads(previous); }
};
}  // namespace

TEST_CASE("parallel_for covers [0, n) once in contiguous ranges; run serially it opens no OpenMP region") {
  for (int threads : {1, 2, 3}) {
    ScopedThreads team(threads);
    for (int64_t n : {0, 1, 2, 5, 1000})
      for (bool parallel : {false, true}) {
        CAPTURE(threads);
        CAPTURE(n);
        CAPTURE(parallel);
        std::vector<int> hits(static_cast<size_t>(n), 0);
        std::atomic<int> calls = 0, max_level = 0;
        cpu::parallel_for(parallel, n, [&](int64_t begin, int64_t end) {
          ++calls;
          max_level = std::max(max_level.load(), omp_get_level());
          for (int64_t i = begin; i < end; ++i) ++hits[static_cast<size_t>(i)];
        });
        CHECK(std::count(hits.begin(), hits.end(), 1) == n);
        const bool split = parallel && n >= 2 && threads > 1;
        CHECK(calls == (split ? std::min<int64_t>(n, threads) : 1));
        CHECK(max_level == (split ? 1 : 0));  // serial: a plain call, no (inactive) region
      }
  }
  // Called from a thread already on a team, it runs serially on that thread.
  ScopedThreads team(2);
  std::atomic<int> calls = 0;
#pragma omp parallel
  cpu::parallel_for(true, 100, [&](int64_t begin, int64_t end) {
    if (begin == 0 && end == 100) ++calls;
  });
  CHECK(calls == 2);
}

TEST_CASE("parallel_reduce folds every thread's range: the first marked index, wherever it lies") {
  ScopedThreads team(3);
  const int64_t n = 100000;
  for (int64_t marked : {int64_t{0}, int64_t{1}, int64_t{33333}, int64_t{33334}, n / 2, n - 1, n}) {
    for (bool parallel : {false, true}) {
      CAPTURE(marked);
      CAPTURE(parallel);
      // Marks `marked` and every index after the middle of its range's neighbour,
      // so each thread's range after the first holding a mark has marks of its own.
      auto is_marked = [&](int64_t i) { return i == marked || (marked < n && i > marked + n / 3); };
      auto first_marked = [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i)
          if (is_marked(i)) return i;
        return n;
      };
      auto earlier = [](int64_t a, int64_t b) { return std::min(a, b); };
      CHECK(cpu::parallel_reduce(parallel, n, n, first_marked, earlier) == marked);
    }
  }
}
#endif
