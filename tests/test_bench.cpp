// tests/test_bench.cpp — the benchmarker's statistics, side-by-side ratios and tables,
// and the real images it times on.
#include <doctest/doctest.h>

#include <algorithm>

#include "idx_files.h"
#include "tools/bench/benchmark.h"
#include "tools/bench/common.h"

using namespace minidl::bench;
using doctest::Approx;

TEST_CASE("statistics of known samples") {
  // 1..10: median 5.5; p10 = 1 + 0.9·1 = 1.9; p90 = 9.1 (linear interpolation, as numpy)
  Stats s = compute_stats({10, 1, 9, 2, 8, 3, 7, 4, 6, 5});
  CHECK(s.min == 1);
  CHECK(s.median == Approx(5.5));
  CHECK(s.mean == Approx(5.5));
  CHECK(s.p10 == Approx(1.9));
  CHECK(s.p90 == Approx(9.1));
  CHECK(s.stddev == Approx(3.0276503540974917));  // sample standard deviation of 1..10
  CHECK(s.noisy());                               // p90/p10 = 4.8
  CHECK_FALSE(compute_stats({1.0, 1.01, 0.99, 1.02}).noisy());
  nlohmann::json t = throughput_json(compute_stats({0.5, 0.5}), {.flops = 1e9, .samples = 128});
  CHECK(t["gflops"].get<double>() == Approx(2.0));
  CHECK(t["samples_per_s"].get<double>() == Approx(256.0));
}

TEST_CASE("run() honours warm-up, minimum runs and minimum time; side by side interleaves") {
  int calls = 0;
  double fake = 0;
  Timer timer = [&](const std::function<void()>& fn) {
    fn();
    return fake;
  };
  fake = 0.01;
  Stats s = run([&] { ++calls; }, {.warmup = 2, .min_runs = 5, .min_seconds = 0.2}, timer);
  CHECK(s.seconds.size() == 20);  // 0.2 s at 0.01 s per run
  CHECK(calls == 22);

  // A takes 3 units, B takes 1: B is 3x faster; after the warm-up (A B) the rounds
  // go A B, B A, A B, B A.
  std::string order;
  Timer by_name = [&](const std::function<void()>& fn) {
    fn();
    return order.back() == 'A' ? 0.03 : 0.01;
  };
  SideBySide r = run_side_by_side({{"A", [&] { order += 'A'; }}, {"B", [&] { order += 'B'; }}},
                                  {.warmup = 1, .min_runs = 4, .min_seconds = 0}, by_name);
  CHECK(order == "AB" "AB" "BA" "AB" "BA");
  CHECK(r.speedup[0] == Approx(1.0));
  CHECK(r.speedup[1] == Approx(3.0));
  CHECK(r.stats[1].median == Approx(0.01));

  // An order effect: whichever variant runs first in a round pays 2 extra units
  // (a cold cache, a pool still spinning). A and B are equally fast; with a fixed
  // A-first order A would look 3x slower. Alternating, each pays it half the time.
  int position = 0;
  Timer first_pays = [&](const std::function<void()>& fn) {
    fn();
    return (position++ % 2 == 0) ? 0.03 : 0.01;
  };
  SideBySide fair = run_side_by_side({{"A", [] {}}, {"B", [] {}}}, {.warmup = 0, .min_runs = 8, .min_seconds = 0},
                                     first_pays);
  CHECK(fair.stats[0].mean == Approx(fair.stats[1].mean));
  CHECK(fair.stats[0].median == Approx(0.02));
  CHECK(fair.stats[1].median == Approx(0.02));
}

TEST_CASE("tables render as text, Markdown, CSV and JSON") {
  Table t("SGEMM", {"shape", "GFLOP/s"});
  t.add_row({"1024x1024x1024", "180.5"});
  t.add_row({"a,b", "1"});
  CHECK(t.text() == "SGEMM\nshape           GFLOP/s\n-----------------------\n1024x1024x1024    180.5\na,b                   1\n");
  CHECK(t.markdown() == "**SGEMM**\n\n| shape | GFLOP/s |\n|---|---:|\n| 1024x1024x1024 | 180.5 |\n| a,b | 1 |\n");
  CHECK(t.csv() == "shape,GFLOP/s\n1024x1024x1024,180.5\n\"a,b\",1\n");
  CHECK(t.json()["rows"][0][1] == "180.5");
  CHECK(format_seconds(0.00123) == "1.230 ms");
  CHECK(format_seconds(2.5) == "2.500 s");
}

TEST_CASE("real_images: the first images of the test set, repeated when it holds fewer than asked") {
  minidl::testing::TempDir dir;
  minidl::testing::write_dataset(dir, "t10k", 5, 6);
  const minidl::Tensor three = real_images(dir.path.string(), 3);
  CHECK(three.shape() == std::vector<int64_t>{3, 1, 6, 6});
  const minidl::Tensor twelve = real_images(dir.path.string(), 12);
  REQUIRE(twelve.shape() == std::vector<int64_t>{12, 1, 6, 6});
  const auto v = twelve.to_vector<float>();
  const size_t image = 36;
  auto same = [&](size_t a, size_t b) {
    return std::equal(v.begin() + a * image, v.begin() + (a + 1) * image, v.begin() + b * image);
  };
  CHECK(same(0, 5));
  CHECK(same(1, 11));
  CHECK_FALSE(same(0, 1));  // the images differ (write_dataset encodes the index in the pixels)
  CHECK(std::equal(v.begin(), v.begin() + 3 * image, three.to_vector<float>().begin()));
}

TEST_CASE("shapes typed on the command line are read strictly, and errors name what is wrong") {
  CHECK(parse_sizes("33x17x65", 3, "gemm", "MxNxK") == std::vector<int64_t>{33, 17, 65});
  CHECK_THROWS_WITH_AS(parse_sizes("33x17", 3, "gemm", "MxNxK"),
                       "bench gemm: cannot parse shape '33x17' (expected MxNxK; 3 whole numbers >= 1 joined by 'x')",
                       minidl::Error);
  for (const char* bad : {"33x17x65x", "33x17x0", " 33x17x65", "33x17x65 ", "33x+17x65", "33x17.0x65"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(parse_sizes(bad, 3, "gemm", "MxNxK"), minidl::Error);
  }
  const ConvShape c = parse_conv_shape("2x3x9x9:4x3:s2:p1");
  CHECK((c.n == 2 && c.c == 3 && c.h == 9 && c.w == 9 && c.o == 4 && c.k == 3 && c.stride == 2 && c.pad == 1));
  CHECK(parse_conv_shape("2x3x9x9:4x3").stride == 1);
  CHECK_THROWS_WITH_AS(parse_conv_shape("2x3x9x9:4x3:"), "bench conv: '' in '2x3x9x9:4x3:' is neither sS nor pP",
                       minidl::Error);
  CHECK_THROWS_WITH_AS(parse_conv_shape("2x3x9x9:4x3:s0"),
                       "bench conv: the stride in '2x3x9x9:4x3:s0' is '0'; it must be a whole number >= 1",
                       minidl::Error);
  CHECK_THROWS_WITH_AS(parse_conv_shape("2x3x9x9:4x3:p-1"),
                       "bench conv: the padding in '2x3x9x9:4x3:p-1' is '-1'; it must be a whole number >= 0",
                       minidl::Error);
  CHECK_THROWS_AS(parse_conv_shape("2x3x9:4x3"), minidl::Error);
  const SweepShape linear = parse_sweep_shape("1024x512"), conv = parse_sweep_shape("conv64x288x196");
  CHECK((linear.out == 1024 && linear.in == 512 && !linear.conv()));
  CHECK((conv.out == 64 && conv.in == 288 && conv.positions == 196 && conv.conv()));
  for (const char* bad : {"1024", "1024x512x3", "conv64x288", "conv64x288x0", "Conv64x288x196", "1024x512 "}) {
    CAPTURE(bad);
    CHECK_THROWS_WITH_AS(parse_sweep_shape(bad), doctest::Contains("bench sparse: cannot parse shape"), minidl::Error);
  }
}
