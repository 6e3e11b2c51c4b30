#include "qlora/train/metrics_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/core/jsonl.h"
#include "qlora/core/log.h"
#include "qlora/train/tb_event_writer.h"

namespace qlora::train {

namespace {

constexpr const char* kMetricsFileName = "metrics.jsonl";
constexpr const char* kRecordKeys[] = {"step", "epoch", "split", "wall_time"};

double system_clock_seconds() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return std::chrono::duration<double>(now).count();
}

std::string host_name() {
  char buffer[256] = {};
  if (::gethostname(buffer, sizeof buffer - 1) != 0 || buffer[0] == '\0') return "localhost";
  return buffer;
}

bool is_record_key(const std::string& name) {
  for (const char* key : kRecordKeys) {
    if (name == key) return true;
  }
  return false;
}

void check_metric_name(const std::string& name) {
  if (name.empty()) fail("metric name is empty");
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '.' || c == '-';
    if (!ok) fail("metric name '" + name + "' has a character outside [A-Za-z0-9_.-]");
  }
  if (is_record_key(name)) fail("metric name '" + name + "' is a reserved key of metrics.jsonl");
}

// Offset just past the last '\n' of the open file (0 when it has none).
off_t end_of_last_line(int fd, off_t size, const std::string& path) {
  char buffer[65536];
  off_t end = size;
  while (end > 0) {
    const off_t begin = end > static_cast<off_t>(sizeof buffer) ? end - static_cast<off_t>(sizeof buffer) : 0;
    const ssize_t n = ::pread(fd, buffer, static_cast<size_t>(end - begin), begin);
    if (n != end - begin) fail(path + ": read failed (" + std::strerror(errno) + ")");
    for (ssize_t i = n - 1; i >= 0; --i) {
      if (buffer[i] == '\n') return begin + i + 1;
    }
    end = begin;
  }
  return 0;
}

// A kill during a write can leave a line without its newline; appending after it would glue
// the next record onto it and corrupt a line in the middle of the file, so it is cut off.
void drop_torn_last_line(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(path + ": cannot stat (" + std::strerror(errno) + ")");
  if (st.st_size == 0) return;
  char last = 0;
  if (::pread(fd, &last, 1, st.st_size - 1) != 1) fail(path + ": read failed (" + std::strerror(errno) + ")");
  if (last == '\n') return;
  const off_t keep = end_of_last_line(fd, st.st_size, path);
  if (::ftruncate(fd, keep) != 0) fail(path + ": cannot truncate (" + std::strerror(errno) + ")");
  log::warn(path + ": dropped a torn last line (" + std::to_string(st.st_size - keep) +
            " bytes) left by an interrupted run");
}

std::string event_file_name_for(const std::string& run_dir, double now) {
  const std::string host = host_name();
  const auto pid = static_cast<int64_t>(::getpid());
  for (int index = 0;; ++index) {
    const std::string name = tb_event_file_name(static_cast<int64_t>(now), host, pid, index);
    if (!fsys::exists(fsys::join(run_dir, name))) return name;
  }
}

double number_field(const Json& record, const char* key, const std::string& path, int64_t line) {
  const auto it = record.find(key);
  if (it == record.end()) fail_at(path, line, std::string("missing key '") + key + "'");
  if (!it->is_number()) fail_at(path, line, std::string("'") + key + "' must be a number");
  return it->get<double>();
}

MetricsRecord parse_record(const Json& record, const std::string& path, int64_t line) {
  if (!record.is_object())
    fail_at(path, line, "expected a JSON object, got " + std::string(record.type_name()));
  MetricsRecord out;
  const auto step = record.find("step");
  if (step == record.end()) fail_at(path, line, "missing key 'step'");
  if (!step->is_number_integer()) fail_at(path, line, "'step' must be an integer");
  out.step = step->get<int64_t>();
  out.epoch = number_field(record, "epoch", path, line);
  out.wall_time = number_field(record, "wall_time", path, line);
  const auto split = record.find("split");
  if (split == record.end()) fail_at(path, line, "missing key 'split'");
  if (*split == "train") {
    out.split = Split::kTrain;
  } else if (*split == "eval") {
    out.split = Split::kEval;
  } else {
    fail_at(path, line, "'split' must be \"train\" or \"eval\", got " + split->dump());
  }
  for (const auto& [name, value] : record.items()) {
    if (is_record_key(name)) continue;
    if (value.is_null()) {
      out.values.emplace_back(name, std::numeric_limits<double>::quiet_NaN());
    } else if (value.is_number()) {
      out.values.emplace_back(name, value.get<double>());
    } else {
      fail_at(path, line, "metric '" + name + "' must be a number or null");
    }
  }
  return out;
}

}  // namespace

const char* split_name(Split split) { return split == Split::kTrain ? "train" : "eval"; }

MetricsWriter::MetricsWriter(std::string run_dir, MetricsWriterOptions options)
    : run_dir_(std::move(run_dir)),
      metrics_path_(fsys::join(run_dir_, kMetricsFileName)),
      clock_(options.clock ? std::move(options.clock) : system_clock_seconds) {
  fsys::create_directories(run_dir_);
  metrics_fd_ = ::open(metrics_path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (metrics_fd_ < 0) fail(metrics_path_ + ": cannot open for appending (" + std::strerror(errno) + ")");
  try {
    drop_torn_last_line(metrics_fd_, metrics_path_);
    if (options.tensorboard) {
      const double now = clock_();
      const std::string name =
          options.event_file_name.empty() ? event_file_name_for(run_dir_, now) : options.event_file_name;
      event_path_ = fsys::join(run_dir_, name);
      events_ = std::make_unique<TbEventWriter>(event_path_, now);
    }
  } catch (...) {
    ::close(metrics_fd_);
    throw;
  }
}

int64_t MetricsWriter::truncate_after_step(int64_t step) {
  if (metrics_fd_ < 0) fail(metrics_path_ + ": truncate_after_step on a closed writer");
  const std::string text = read_file(metrics_path_);
  size_t begin = 0, cut = std::string::npos;
  int64_t line = 0, dropped = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    ++line;
    const std::string_view content(text.data() + begin, end - begin);
    if (cut == std::string::npos && content.find_first_not_of(" \t\r") != std::string_view::npos) {
      Json record;
      try {
        record = Json::parse(content);
      } catch (const Json::exception& e) {
        fail_at(metrics_path_, line, std::string("not valid JSON: ") + e.what());
      }
      if (number_field(record, "step", metrics_path_, line) > static_cast<double>(step)) cut = begin;
    }
    if (cut != std::string::npos) ++dropped;
    begin = end + 1;
  }
  if (cut == std::string::npos) return 0;
  if (::ftruncate(metrics_fd_, static_cast<off_t>(cut)) != 0)
    fail(metrics_path_ + ": cannot truncate (" + std::strerror(errno) + ")");
  log::info(metrics_path_ + ": removed " + std::to_string(dropped) + " record(s) logged after step " +
            std::to_string(step) + " by the interrupted run (logged again as training resumes)");
  return dropped;
}

MetricsWriter::~MetricsWriter() {
  if (metrics_fd_ >= 0) ::close(metrics_fd_);
}

void MetricsWriter::log(Split split, int64_t step, double epoch, const MetricValues& values) {
  if (metrics_fd_ < 0) fail(metrics_path_ + ": metrics writer already closed");
  if (step < 0) fail("metrics step must be >= 0, got " + std::to_string(step));
  for (size_t i = 0; i < values.size(); ++i) {
    check_metric_name(values[i].first);
    for (size_t j = 0; j < i; ++j) {
      if (values[j].first == values[i].first)
        fail("metric '" + values[i].first + "' logged twice in one record");
    }
  }
  const double wall_time = clock_();

  Json record = Json::object();
  record["step"] = step;
  record["epoch"] = epoch;
  record["split"] = split_name(split);
  record["wall_time"] = wall_time;
  std::vector<TbScalar> scalars;
  for (const auto& [name, value] : values) {
    record[name] = std::isfinite(value) ? Json(value) : Json(nullptr);
    scalars.push_back({std::string(split_name(split)) + "/" + name, static_cast<float>(value)});
  }
  fsys::write_all(metrics_fd_,
                  record.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::strict) + "\n",
                  metrics_path_);
  if (events_) events_->add_scalars(step, wall_time, scalars);
}

void MetricsWriter::close() {
  if (metrics_fd_ >= 0) {
    const int fd = metrics_fd_;
    metrics_fd_ = -1;
    const bool synced = ::fsync(fd) == 0;
    const int sync_errno = errno;
    if (::close(fd) != 0 || !synced) {
      fail(metrics_path_ + ": cannot flush (" + std::strerror(synced ? errno : sync_errno) + ")");
    }
  }
  if (events_) events_->close();
}

std::vector<MetricsRecord> read_metrics_jsonl(const std::string& path) {
  const std::string text = read_file(path);
  std::vector<MetricsRecord> records;
  size_t begin = 0;
  for (int64_t line = 1; begin < text.size(); ++line) {
    const size_t newline = text.find('\n', begin);
    const bool complete = newline != std::string::npos;
    std::string content = text.substr(begin, complete ? newline - begin : std::string::npos);
    begin = complete ? newline + 1 : text.size();
    if (!content.empty() && content.back() == '\r') content.pop_back();
    if (content.find_first_not_of(" \t") == std::string::npos) continue;
    Json record;
    try {
      record = Json::parse(content);
    } catch (const nlohmann::json::parse_error& e) {
      if (!complete) break;  // torn by a kill mid-write: the record was never finished
      fail_at(path, line, std::string("malformed JSON: ") + e.what());
    }
    records.push_back(parse_record(record, path, line));
  }
  return records;
}

}  // namespace qlora::train
