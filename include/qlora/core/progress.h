// A progress line on stderr for long work: count/total, rate, ETA and any extra fields (loss,
// lr, tokens/s). On a terminal it redraws one line; otherwise (logs, CI) it prints a line at
// most every `min_interval_s` seconds so log files stay readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qlora {

class Progress {
 public:
  Progress(std::string label, int64_t total, double min_interval_s = 10.0);
  ~Progress();

  // Sets the count done so far; `fields` are shown as "name value" pairs after the counter.
  void update(int64_t done, const std::vector<std::pair<std::string, std::string>>& fields = {});
  void finish();

  // "1h02m", "3m05s", "12s".
  static std::string format_duration(double seconds);
  // The line as it would be drawn (tested directly).
  std::string render(int64_t done, double elapsed_s,
                     const std::vector<std::pair<std::string, std::string>>& fields) const;

 private:
  std::string label_;
  int64_t total_;
  double min_interval_s_;
  bool tty_;
  bool finished_ = false;
  int64_t last_done_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_print_;
};

}  // namespace qlora
