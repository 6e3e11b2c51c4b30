// Training metrics a user can plot, in two forms written side by side in the run folder:
//   run_dir/metrics.jsonl   one JSON object per log call, for scripts and pandas:
//       {"step":120,"epoch":0.5,"split":"train","wall_time":1767225600.25,"loss":1.93,"learning_rate":0.0002}
//     (a non-finite value, such as a diverged loss, is written as null)
//   run_dir/events.out.tfevents.<unix_time>.<hostname>.<pid>.0   for TensorBoard
//       (`tensorboard --logdir run_dir`), one scalar per metric tagged "<split>/<name>":
//       train/loss, train/learning_rate, eval/f1.
// Every record goes to the kernel in one write(2) as soon as it is logged, so a killed run keeps
// all it logged. A kill in the middle of a write can leave a torn last line; read_metrics_jsonl()
// skips it, and a MetricsWriter reopening the folder (a resumed run) cuts it off before appending.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace qlora::train {

class TbEventWriter;

enum class Split { kTrain, kEval };

// "train" / "eval".
const char* split_name(Split split);

// Named values in the order they were logged: {"loss", 1.93}, {"learning_rate", 2e-4}.
using MetricValues = std::vector<std::pair<std::string, double>>;

struct MetricsRecord {
  int64_t step = 0;
  double epoch = 0.0;
  Split split = Split::kTrain;
  double wall_time = 0.0;  // seconds since the Unix epoch
  MetricValues values;     // null in the file reads back as NaN
};

struct MetricsWriterOptions {
  bool tensorboard = true;  // also write the TensorBoard event file
  // Seconds since the Unix epoch for each record; empty: the system clock. Tests fix it.
  std::function<double()> clock;
  // Event file name inside run_dir; empty: tb_event_file_name(now, hostname, pid), with the last
  // number raised past any file of that name already there.
  std::string event_file_name;
};

class MetricsWriter {
 public:
  // Creates run_dir (mkdir -p) and opens metrics.jsonl for appending. Throws Error naming the path.
  explicit MetricsWriter(std::string run_dir, MetricsWriterOptions options = {});
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  // Logs one record. Metric names are non-empty, made of [A-Za-z0-9_.-], distinct, and not one
  // of the record's own keys (step, epoch, split, wall_time); anything else throws Error.
  void log(Split split, int64_t step, double epoch, const MetricValues& values);
  // A resumed run continues from a checkpoint at `step`: the records the interrupted run logged after it
  // are cut from metrics.jsonl (the resumed run logs those steps again; duplicates would make curves
  // zig-zag). Cuts at the first record whose step is greater; returns the number of lines removed.
  int64_t truncate_after_step(int64_t step);
  // fsyncs and closes both files (the destructor closes without fsync). Idempotent.
  void close();

  const std::string& metrics_path() const { return metrics_path_; }
  // Empty when options.tensorboard is false.
  const std::string& event_path() const { return event_path_; }

 private:
  std::string run_dir_;
  std::string metrics_path_;
  std::string event_path_;
  std::function<double()> clock_;
  int metrics_fd_ = -1;
  std::unique_ptr<TbEventWriter> events_;
};

// Reads metrics.jsonl. A last line without its newline that is not valid JSON is a write torn by
// a kill and is skipped; any other malformed line throws Error "FILE:LINE: ...".
std::vector<MetricsRecord> read_metrics_jsonl(const std::string& path);

}  // namespace qlora::train
