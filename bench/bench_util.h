// Helpers shared by the bench_* programs: peak memory from /proc, the median of timings, what loading cost,
// and an adapter's trainable tensors by name.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "qlora/core/jsonl.h"

namespace qlora_bench {

// A value of /proc/self/status in MiB ("VmHWM", "VmRSS"), or -1 when it cannot be read.
inline double proc_status_mib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size() + 1, key + ":") == 0)
      return std::stod(line.substr(key.size() + 1)) / 1024.0;
  }
  return -1;
}

// Resets VmHWM to the current RSS (Linux >= 4.0), so that the peak of the timed part can be told apart
// from the peak of loading. Returns false where /proc refuses it.
inline bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

inline double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Time and memory of loading a model; after_load also resets the peak so that the run's own peak is seen.
struct LoadInfo {
  double load_s = 0, load_peak_mib = 0, rss_after_load_mib = 0;
  bool peak_reset = false;
};

inline LoadInfo after_load(std::chrono::steady_clock::time_point t_load) {
  LoadInfo info;
  info.load_s = ms_since(t_load) / 1000.0;
  info.load_peak_mib = proc_status_mib("VmHWM");
  info.rss_after_load_mib = proc_status_mib("VmRSS");
  info.peak_reset = reset_peak_rss();
  return info;
}

// The memory fields every mode reports.
inline void add_memory(qlora::Json& out, const LoadInfo& info) {
  const double hwm_mib = proc_status_mib("VmHWM");  // since the reset when it worked, else whole run
  out["peak_rss_mib"] = std::max(info.load_peak_mib, hwm_mib);
  out["run_peak_rss_mib"] = info.peak_reset ? qlora::Json(hwm_mib) : qlora::Json(nullptr);
  out["load_peak_rss_mib"] = info.load_peak_mib;
  out["rss_after_load_mib"] = info.rss_after_load_mib;
  out["load_s"] = info.load_s;
}

// peft::LoraSummary::trainable ({key, tensor*} in PEFT order) as (name, tensor) pairs for
// train::decay_groups, and the bare tensors for clip_grad_norm.
template <typename Trainable>
std::vector<std::pair<std::string, at::Tensor>> named_trainable(const Trainable& trainable) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& t : trainable) out.emplace_back(t.key, *t.tensor);
  return out;
}

inline std::vector<at::Tensor> tensors_of(const std::vector<std::pair<std::string, at::Tensor>>& named) {
  std::vector<at::Tensor> out;
  for (const auto& [name, t] : named) out.push_back(t);
  return out;
}

}  // namespace qlora_bench
