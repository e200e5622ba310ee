// tests/test_sgemm_emulated.cpp — the hand-written CUDA SGEMM's kernels
// (cuda/sgemm_kernels.cuh), every version, run on the host through
// tests/cuda_emulator.h and checked against a double-precision product.
//
// The GPU parity tests (tests/test_cuda.cpp) need a GPU; this one runs
// everywhere, so an indexing mistake in a tile, an edge or a transposed operand
// fails in CI, not first on a lent machine. (It checks what the kernels
// compute, not how fast; warp-level code is not in these kernels.)
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

#include "cuda_emulator.h"
// after the emulator: the kernels see its dim3, float4, blockIdx, __syncthreads
#include "cuda/sgemm_kernels.cuh"

namespace {

struct SgemmCase {
  int64_t M, N, K;
  bool ta, tb;  // A or B read transposed (unit row stride)
};

void check_version(int version, const SgemmCase& c) {
  CAPTURE(version);
  CAPTURE(c.M);
  CAPTURE(c.N);
  CAPTURE(c.K);
  CAPTURE(c.ta);
  CAPTURE(c.tb);
  std::mt19937 rng(static_cast<unsigned>(c.M * 131 + c.N * 7 + c.K));
  std::normal_distribution<float> normal;
  std::vector<float> a(c.M * c.K), b(c.K * c.N), bias(c.N), out(c.M * c.N);
  for (float& v : a) v = normal(rng);
  for (float& v : b) v = normal(rng);
  for (float& v : bias) v = normal(rng);
  for (float& v : out) v = normal(rng);  // C before: beta = 2 reads it
  const std::vector<float> c0 = out;
  // A (M, K) stored row-major, or its transpose stored (K, M); likewise B.
  const int64_t a_rs = c.ta ? 1 : c.K, a_cs = c.ta ? c.M : 1, b_rs = c.tb ? 1 : c.N, b_cs = c.tb ? c.K : 1;
  using minidl::cuda::sgemm::Gemm;
  const Gemm g{c.M, c.N, c.K, a.data(), a_rs, a_cs, b.data(), b_rs, b_cs, out.data(), c.N, 0.5f, 2.0f,
               bias.data(), false, true};
  const auto shape = minidl::cuda::sgemm::launch_shape(version, c.M, c.N);
  minidl::testing::emulate(shape.grid, shape.block, [&] {
    using namespace minidl::cuda::sgemm;
    if (version == 1) sgemm_v1_naive(g);
    if (version == 2) sgemm_v2_shared(g);
    if (version == 3) sgemm_v3_registers(g);
    if (version == 4) sgemm_v4_vectorised(g, vector_rows(g.A, g.a_rs, g.a_cs), vector_rows(g.B, g.b_rs, g.b_cs));
    if (version == 5) sgemm_v5_warptiled(g, vector_rows(g.A, g.a_rs, g.a_cs), vector_rows(g.B, g.b_rs, g.b_cs));
  });
  double worst = 0;
  for (int64_t m = 0; m < c.M; ++m)
    for (int64_t n = 0; n < c.N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < c.K; ++k) acc += double(a[m * a_rs + k * a_cs]) * double(b[k * b_rs + n * b_cs]);
      const double want = std::max(0.5 * acc + 2.0 * c0[m * c.N + n] + bias[n], 0.0);
      worst = std::max(worst, std::abs(want - out[m * c.N + n]) / (1 + std::abs(want)));
    }
  CHECK(worst < 1e-4);
}

}  // namespace

TEST_CASE("the emulator itself: barriers order the block, shuffles exchange, a deadlock and an exception are thrown") {
  using minidl::testing::emulate;
  // Each thread writes its slot, waits, then reads its neighbour's: right only if
  // the barrier held every thread until all had written.
  std::vector<unsigned> seen(64 * 3, 0);
  emulate({3, 1, 1}, {32, 2, 1}, [&] {
    static unsigned slot[64];
    const unsigned t = threadIdx.y * blockDim.x + threadIdx.x;
    slot[t] = t + 1000 * blockIdx.x;
    __syncthreads();
    seen[blockIdx.x * 64 + t] = slot[(t + 1) % 64];
    __syncthreads();  // nobody writes the next block's values before all have read
  });
  for (unsigned b = 0; b < 3; ++b)
    for (unsigned t = 0; t < 64; ++t) REQUIRE(seen[b * 64 + t] == (t + 1) % 64 + 1000 * b);
  // A butterfly over each warp: every lane ends with the warp's sum.
  std::vector<float> sums(64);
  emulate({1, 1, 1}, {64, 1, 1}, [&] {
    float v = float(threadIdx.x);
    for (int mask = 16; mask > 0; mask /= 2) v += __shfl_xor_sync(0xffffffffu, v, mask);
    sums[threadIdx.x] = v;
  });
  for (unsigned t = 0; t < 64; ++t) REQUIRE(sums[t] == (t < 32 ? 496.0f : 32 * 32 + 496.0f));
  // Thread 0 skips the barrier: on a GPU a hang; here an error.
  CHECK_THROWS_WITH(emulate({1, 1, 1}, {32, 1, 1},
                            [] {
                              if (threadIdx.x != 0) __syncthreads();
                            }),
                    doctest::Contains("deadlock"));
  CHECK_THROWS_WITH(emulate({2, 1, 1}, {32, 1, 1},
                            [] {
                              __syncthreads();
                              if (blockIdx.x == 1 && threadIdx.x == 5) throw std::runtime_error("thread 5 of block 1");
                              __syncthreads();
                            }),
                    "thread 5 of block 1");
  // And the emulator runs the next launch normally after both.
  std::vector<unsigned> ran(32, 0);
  emulate({1, 1, 1}, {32, 1, 1}, [&] {
    __syncthreads();
    ran[threadIdx.x] = 1;
  });
  CHECK(std::count(ran.begin(), ran.end(), 1u) == 32);
}

TEST_CASE("the hand-written CUDA SGEMM, every version, on the host emulator: edges, transposes, epilogue") {
  // Shapes chosen to break tiles: one element, remainders in every dimension,
  // K shorter than a tile step, tiles exactly filled, and each operand transposed.
  const std::vector<SgemmCase> cases = {{1, 1, 1, false, false},     {17, 33, 65, false, false},
                                        {130, 129, 20, false, true}, {65, 140, 7, true, false},
                                        {128, 128, 16, true, true},  {3, 200, 37, false, false},
                                        {256, 132, 64, false, false}};  // the last: float4 loads for A and B
  for (int version = 1; version <= 5; ++version)
    for (const SgemmCase& c : cases) check_version(version, c);
}
