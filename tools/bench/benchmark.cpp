#include "tools/bench/benchmark.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fmt/format.h>
#include <numeric>
#include <sstream>

namespace minidl::bench {

double host_timer(const std::function<void()>& fn) {
  auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

namespace {
// Linear interpolation between order statistics, as numpy.percentile's default.
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  double pos = q * static_cast<double>(sorted.size() - 1);
  size_t lo = static_cast<size_t>(pos);
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}
}  // namespace

Stats compute_stats(std::vector<double> seconds) {
  Stats s;
  s.seconds = seconds;
  if (seconds.empty()) return s;
  std::sort(seconds.begin(), seconds.end());
  s.min = seconds.front();
  s.median = percentile(seconds, 0.5);
  s.p10 = percentile(seconds, 0.1);
  s.p90 = percentile(seconds, 0.9);
  s.mean = std::accumulate(seconds.begin(), seconds.end(), 0.0) / static_cast<double>(seconds.size());
  double ss = 0;
  for (double x : seconds) ss += (x - s.mean) * (x - s.mean);
  s.stddev = seconds.size() > 1 ? std::sqrt(ss / static_cast<double>(seconds.size() - 1)) : 0;
  return s;
}

nlohmann::json Stats::to_json() const {
  return {{"runs", seconds.size()}, {"min_s", min},   {"median_s", median}, {"mean_s", mean},
          {"stddev_s", stddev},     {"p10_s", p10},   {"p90_s", p90},       {"noisy", noisy()}};
}

nlohmann::json throughput_json(const Stats& s, const Work& w) {
  nlohmann::json j = nlohmann::json::object();
  if (s.median <= 0) return j;
  if (w.flops > 0) j["gflops"] = w.flops / s.median / 1e9;
  if (w.bytes > 0) j["gb_per_s"] = w.bytes / s.median / 1e9;
  if (w.samples > 0) j["samples_per_s"] = w.samples / s.median;
  return j;
}

void flush_caches() {
  static std::vector<char> buffer(64 << 20, 1);
  volatile char sink = 0;
  for (size_t i = 0; i < buffer.size(); i += 64) {
    buffer[i] = static_cast<char>(buffer[i] + 1);
    sink = static_cast<char>(sink + buffer[i]);
  }
  (void)sink;
}

Stats run(const std::function<void()>& fn, const Options& o, const Timer& timer) {
  for (int i = 0; i < o.warmup; ++i) fn();
  std::vector<double> times;
  double total = 0;
  while ((static_cast<int>(times.size()) < o.min_runs || total < o.min_seconds) &&
         static_cast<int>(times.size()) < o.max_runs) {
    if (o.cold) flush_caches();
    double t = timer(fn);
    times.push_back(t);
    total += t;
  }
  return compute_stats(std::move(times));
}

SideBySide run_side_by_side(const std::vector<Variant>& variants, const Options& o, const Timer& timer) {
  const size_t n = variants.size();
  for (int i = 0; i < o.warmup; ++i)
    for (const auto& v : variants) v.fn();
  std::vector<std::vector<double>> times(n);  // times[k][r]: variant k in round r
  double total = 0;
  int rounds = 0;
  // One round runs every variant once; the order flips every round (A B C, C B A,
  // A B C, ...: ABBA for two), so whatever the previous call leaves behind — a
  // spinning thread pool, a warm cache, a clock ramp — falls on each side alike.
  while ((rounds < o.min_runs || total < o.min_seconds) && rounds < o.max_runs) {
    for (size_t i = 0; i < n; ++i) {
      const size_t k = rounds % 2 == 0 ? i : n - 1 - i;
      if (o.cold) flush_caches();
      double t = timer(variants[k].fn);
      times[k].push_back(t);
      total += t / static_cast<double>(n);
    }
    ++rounds;
  }
  SideBySide out;
  for (size_t k = 0; k < n; ++k) {
    std::vector<double> ratios;
    for (int r = 0; r < rounds; ++r) ratios.push_back(times[0][r] / times[k][r]);
    Stats rs = compute_stats(ratios);
    out.speedup.push_back(rs.median);
    out.speedup_p10.push_back(rs.p10);
    out.speedup_p90.push_back(rs.p90);
    out.stats.push_back(compute_stats(times[k]));
  }
  return out;
}

std::string format_seconds(double s) {
  if (s >= 1) return fmt::format("{:.3f} s", s);
  if (s >= 1e-3) return fmt::format("{:.3f} ms", s * 1e3);
  return fmt::format("{:.2f} us", s * 1e6);
}

// ---------------------------------------------------------------- Table

std::string Table::text() const {
  std::vector<size_t> width(columns_.size(), 0);
  for (size_t c = 0; c < columns_.size(); ++c) width[c] = columns_[c].size();
  for (const auto& row : rows_)
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) width[c] = std::max(width[c], row[c].size());
  std::ostringstream os;
  if (!title_.empty()) os << title_ << "\n";
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t c = 0; c < columns_.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      if (c == 0) os << cell << std::string(width[c] - cell.size(), ' ');  // names left-aligned
      else os << "  " << std::string(width[c] - cell.size(), ' ') << cell;
    }
    os << "\n";
  };
  line(columns_);
  size_t total = 0;
  for (size_t w : width) total += w + 2;
  os << std::string(total - 2, '-') << "\n";
  for (const auto& row : rows_) line(row);
  return os.str();
}

std::string Table::markdown() const {
  std::ostringstream os;
  if (!title_.empty()) os << "**" << title_ << "**\n\n";
  auto line = [&](const std::vector<std::string>& cells) {
    os << "|";
    for (size_t c = 0; c < columns_.size(); ++c) os << " " << (c < cells.size() ? cells[c] : "") << " |";
    os << "\n";
  };
  line(columns_);
  os << "|";
  for (size_t c = 0; c < columns_.size(); ++c) os << (c == 0 ? "---|" : "---:|");
  os << "\n";
  for (const auto& row : rows_) line(row);
  return os.str();
}

std::string Table::csv() const {
  auto quote = [](const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return q + "\"";
  };
  std::ostringstream os;
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t c = 0; c < cells.size(); ++c) os << (c ? "," : "") << quote(cells[c]);
    os << "\n";
  };
  line(columns_);
  for (const auto& row : rows_) line(row);
  return os.str();
}

nlohmann::json Table::json() const { return {{"title", title_}, {"columns", columns_}, {"rows", rows_}}; }

}  // namespace minidl::bench
