#include "qlora/core/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <sstream>

namespace qlora {

Progress::Progress(std::string label, int64_t total, double min_interval_s)
    : label_(std::move(label)),
      total_(total),
      min_interval_s_(min_interval_s),
      tty_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

Progress::~Progress() {
  if (!finished_ && tty_ && last_done_ > 0) std::fputc('\n', stderr);
}

std::string Progress::format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>((s % 3600) / 60));
  } else if (s >= 60) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  }
  return buf;
}

std::string Progress::render(int64_t done, double elapsed_s,
                             const std::vector<std::pair<std::string, std::string>>& fields) const {
  std::ostringstream out;
  out << label_ << " ";
  if (total_ > 0) {
    const double frac = std::min(1.0, static_cast<double>(done) / static_cast<double>(total_));
    constexpr int kWidth = 20;
    const int filled = static_cast<int>(frac * kWidth);
    out << "[" << std::string(filled, '#') << std::string(kWidth - filled, '.') << "] " << done << "/"
        << total_;
  } else {
    out << done;
  }
  const double rate = elapsed_s > 0 ? static_cast<double>(done) / elapsed_s : 0.0;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f/s", rate);
  out << " " << buf;
  for (const auto& [name, value] : fields) out << " " << name << " " << value;
  out << " elapsed " << format_duration(elapsed_s);
  if (total_ > 0 && done > 0 && done < total_) {
    out << " eta "
        << format_duration(elapsed_s / static_cast<double>(done) * static_cast<double>(total_ - done));
  }
  return out.str();
}

void Progress::update(int64_t done, const std::vector<std::pair<std::string, std::string>>& fields) {
  last_done_ = done;
  const auto now = std::chrono::steady_clock::now();
  const double since_print = std::chrono::duration<double>(now - last_print_).count();
  const bool last = total_ > 0 && done >= total_;
  if (!tty_ && !last && since_print < min_interval_s_) return;
  if (tty_ && !last && since_print < 0.1) return;  // Redraw at most 10 times a second.
  last_print_ = now;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const std::string line = render(done, elapsed, fields);
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (tty_ && last_done_ > 0) std::fputc('\n', stderr);
}

}  // namespace qlora
