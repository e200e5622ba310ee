#include "tools/bench/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

namespace minidl::bench {

namespace {
std::string minutes_seconds(double s) {
  const auto total = static_cast<int64_t>(s + 0.5);
  return total >= 60 ? fmt::format("{}m {:02}s", total / 60, total % 60) : fmt::format("{}s", total);
}
}  // namespace

Progress::Progress(std::string title, int64_t total, bool enabled)
    : title_(std::move(title)), total_(std::max<int64_t>(total, 1)), enabled_(enabled),
      tty_(isatty(fileno(stderr)) != 0), start_(std::chrono::steady_clock::now()) {
  if (enabled_) draw("");
}

Progress::~Progress() {
  if (enabled_ && tty_) std::fputc('\n', stderr);
}

void Progress::step(const std::string& what) {
  done_ = std::min(done_ + 1, total_);
  if (enabled_) draw(what);
}

void Progress::draw(const std::string& what) {
  const double fraction = static_cast<double>(done_) / static_cast<double>(total_);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const std::string eta = done_ > 0 ? "eta " + minutes_seconds(elapsed / fraction - elapsed) : "";
  if (tty_) {
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    std::fprintf(stderr, "\r%s [%s%s] %3d%%  %lld/%lld  %-28s %-14s", title_.c_str(), std::string(filled, '#').c_str(),
                 std::string(kWidth - filled, '.').c_str(), static_cast<int>(fraction * 100),
                 static_cast<long long>(done_), static_cast<long long>(total_), what.c_str(), eta.c_str());
    std::fflush(stderr);
    return;
  }
  const int tenth = static_cast<int>(fraction * 10);
  if (tenth == last_tenth_) return;
  last_tenth_ = tenth;
  std::fprintf(stderr, "%s: %3d%% (%lld/%lld, %s elapsed) %s\n", title_.c_str(), tenth * 10,
               static_cast<long long>(done_), static_cast<long long>(total_), minutes_seconds(elapsed).c_str(),
               what.c_str());
}

}  // namespace minidl::bench
