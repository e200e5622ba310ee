// tools/bench/benchmark.h — the benchmarker every `minidl bench ...` goes through.
//
// Honest timing in four pieces:
//   1. run(): warm up, then time a callable until both a minimum number of runs
//      and a minimum total time are reached. Host timing uses a steady clock; a
//      Timer hook lets the CUDA backend time with events instead.
//   2. Stats: min, median, mean, stddev, p10, p90, and a `noisy` flag when the
//      spread says the machine was busy. Throughput from the work per run.
//   3. run_side_by_side(): variants interleaved in rounds in one process, the
//      order reversed every other round (A B, B A, A B, ...), so machine drift
//      and order effects hit all of them alike; speed-up ratios taken per round.
//   4. Table: rows of variants, columns of sizes, rendered as aligned text for
//      people, or Markdown, CSV and JSON for scripts.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace minidl::bench {

struct Options {
  int warmup = 3;            // untimed runs first
  int min_runs = 10;
  double min_seconds = 0.5;  // keep running until both minimums are met
  int max_runs = 1000000;
  bool cold = false;         // evict the caches (a 64 MiB sweep) before every timed run
};

// Seconds one call of `fn` took. The default times on the host with a steady
// clock; a device timer records events around the call and synchronises.
using Timer = std::function<double(const std::function<void()>& fn)>;
double host_timer(const std::function<void()>& fn);

struct Stats {
  std::vector<double> seconds;  // every timed run
  double min = 0, median = 0, mean = 0, stddev = 0, p10 = 0, p90 = 0;
  // True when p90 is more than 25% above p10: the figures are shaky.
  bool noisy() const { return p10 > 0 && p90 / p10 > 1.25; }
  nlohmann::json to_json() const;  // without the raw samples unless asked
};
Stats compute_stats(std::vector<double> seconds);

// Work done by one run, for throughput figures (zero: not reported).
struct Work {
  double flops = 0;
  double bytes = 0;
  double samples = 0;
};
nlohmann::json throughput_json(const Stats& s, const Work& w);

Stats run(const std::function<void()>& fn, const Options& options = {}, const Timer& timer = host_timer);

struct Variant {
  std::string name;
  std::function<void()> fn;
};
struct SideBySide {
  std::vector<Stats> stats;  // one per variant
  // ratio[i] = median over rounds of time(variant 0) / time(variant i): > 1 means i is faster
  std::vector<double> speedup;
  std::vector<double> speedup_p10, speedup_p90;
};
SideBySide run_side_by_side(const std::vector<Variant>& variants, const Options& options = {},
                            const Timer& timer = host_timer);

// Evicts the data caches by sweeping a 64 MiB buffer (larger than any LLC here).
void flush_caches();

// A table of cells; the first column holds row names.
class Table {
 public:
  Table(std::string title, std::vector<std::string> columns) : title_(std::move(title)), columns_(std::move(columns)) {}
  void add_row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  std::string text() const;      // aligned, for a terminal
  std::string markdown() const;
  std::string csv() const;
  nlohmann::json json() const;   // {"title", "columns", "rows": [[...]]}

 private:
  std::string title_;
  std::vector<std::string> columns_;
  std::vector<std::vector<std::string>> rows_;
};

// "1.23 ms", "456 µs": a duration for people.
std::string format_seconds(double s);

}  // namespace minidl::bench
