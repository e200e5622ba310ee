// examples/time_fusion.cpp — timing your own code with minidl's benchmarker.
//
// Is a fused op worth it? Time both forms side by side, the way every
// `minidl bench` command does: warm-up runs first, then rounds that run each
// variant once in turn (A B A B ...) until enough runs and enough time have
// passed, so a machine that slows down mid-measurement slows both alike; the
// speed-up is the median of the per-round ratios.
//
// Here: a linear layer followed by a ReLU, as two ops (two passes over the
// output, two graph nodes) and as one (the ReLU is the GEMM's epilogue), for
// inference and for a training step. What it shows on a 2-core Zen 4: the fused
// form saves a few percent of inference at batch 1 and nothing measurable in a
// training step, whose time is the GEMMs' — a ReLU pass over 128×512 floats is
// ~1% of it. Measuring is how you find out which fusions matter.
//
//   ./build/default/examples/time_fusion [seconds per variant, default 0.5]

#include <cstdio>
#include <cstdlib>

#include "minidl.h"
#include "tools/bench/benchmark.h"

using namespace minidl;

int main(int argc, char** argv) {
  // (parse_real, core/parse.h: the whole argument is the number, or it is refused)
  const std::optional<double> seconds = argc > 1 ? parse_real(argv[1]) : 0.5;
  if (!seconds || !(*seconds >= 0 && *seconds <= 3600)) {
    std::fprintf(stderr, "time_fusion: seconds per variant must be in [0, 3600], got '%s'\n", argv[1]);
    return 2;
  }
  Generator gen(0);
  bench::Table table("linear 784 -> 512 then ReLU: two ops or one", {"case", "two ops", "fused", "fused speed-up"});
  for (const bool training : {false, true})
    for (int64_t batch : {1, 128}) {
      Tensor x = randn({batch, 784}, {}, gen);
      Tensor w = mul(randn({512, 784}, {}, gen), scalar_like(0.03, x)).requires_grad_(training);
      Tensor b = zeros({512}).requires_grad_(training);
      auto variant = [&](bool fused) {
        return [&, fused] {
          Tensor y = fused ? linear(x, w, b, Activation::relu) : relu(linear(x, w, b));
          if (training) {
            sum(y).backward();
            w.set_grad(Tensor()), b.set_grad(Tensor());
          }
        };
      };
      bench::SideBySide r = bench::run_side_by_side({{"two ops", variant(false)}, {"fused", variant(true)}},
                                                    {.warmup = 5, .min_runs = 20, .min_seconds = *seconds});
      // speedup[k] = time(variant 0) / time(variant k) in each round, median over rounds.
      char ratio[32];
      std::snprintf(ratio, sizeof ratio, "%.2fx", r.speedup[1]);
      auto cell = [](const bench::Stats& s) { return bench::format_seconds(s.median) + (s.noisy() ? " (noisy)" : ""); };
      table.add_row({(training ? "train step, batch " : "inference, batch ") + std::to_string(batch),
                     cell(r.stats[0]), cell(r.stats[1]), ratio});
    }
  std::printf("%s", table.text().c_str());
}
