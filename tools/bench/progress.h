// tools/bench/progress.h — a progress bar for long work (sweeps, pruning runs).
//
// On a terminal it redraws one line on stderr: "[#########.......]  56%  12/21
// 1024x1024 90%  eta 1m 40s". Elsewhere (a CI log) it prints a line at every
// tenth of the way instead, so the log shows progress without a flood.
// stdout stays clean for the table or the JSON.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace minidl::bench {

class Progress {
 public:
  Progress(std::string title, int64_t total, bool enabled = true);
  ~Progress();  // ends the line
  // One more step done; `what` says what is being worked on now.
  void step(const std::string& what = "");
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

 private:
  void draw(const std::string& what);
  std::string title_;
  int64_t total_, done_ = 0;
  int last_tenth_ = -1;
  bool enabled_, tty_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace minidl::bench
