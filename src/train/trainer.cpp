#include "qlora/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/CachingDeviceAllocator.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/core/log.h"
#include "qlora/core/progress.h"
#include "qlora/data/split.h"
#include "qlora/io/safetensors.h"
#include "qlora/train/loss_scaler.h"
#include "qlora/train/optimizer.h"
#include "qlora/train/schedule.h"

namespace qlora::train {

namespace {

constexpr const char* kStateFile = "trainer_state.json";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kRngFile = "rng_state.safetensors";
constexpr const char* kScalerFile = "scaler.safetensors";

// Where the run is; saved in trainer_state.json so a resumed run continues at the same sample.
struct RunState {
  int64_t global_step = 0;
  int64_t epoch_index = 0;     // epochs completed
  int64_t micro_in_epoch = 0;  // micro batches of the current epoch already consumed
  double best_metric = 0;
  int64_t best_step = -1;
  std::string best_checkpoint;
  int64_t evals_without_improvement = 0;
  int64_t skipped_steps = 0;  // fp16 overflow steps: the lr schedule did not advance on them
};

struct Plan {
  int64_t samples = 0;
  int64_t micro_per_epoch = 0;
  int64_t steps_per_epoch = 0;
  int64_t total_steps = 0;
  int64_t warmup_steps = 0;
};

void check_options(const TrainerOptions& o) {
  if (o.output_dir.empty()) fail("train.output_dir must be set");
  if (o.micro_batch_size <= 0) fail("train.micro_batch_size must be positive");
  if (o.gradient_accumulation_steps <= 0) fail("train.gradient_accumulation_steps must be positive");
  if (o.max_steps <= 0 && o.epochs <= 0) fail("train.epochs must be positive unless train.max_steps is set");
  if (o.logging_steps <= 0) fail("train.logging_steps must be positive");
  if (o.mixed_precision != "no" && o.mixed_precision != "fp16" && o.mixed_precision != "bf16") {
    fail("train.mixed_precision '" + o.mixed_precision + "' is not one of no, fp16, bf16");
  }
  adamw_variant(o.optim, {});  // rejects an unknown train.optim before any work
}

// Autocast for the forward passes (torch.autocast(device_type, dtype) enter / exit); inactive when
// `dtype` is undefined (no mixed precision). Trainable parameters stay float32: master weights.
class AutocastRegion {
 public:
  AutocastRegion(at::DeviceType device, std::optional<at::ScalarType> dtype)
      : device_(device), active_(dtype) {
    if (!active_) return;
    was_enabled_ = at::autocast::is_autocast_enabled(device_);
    was_dtype_ = at::autocast::get_autocast_dtype(device_);
    at::autocast::set_autocast_enabled(device_, true);
    at::autocast::set_autocast_dtype(device_, *dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastRegion() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, was_enabled_);
    at::autocast::set_autocast_dtype(device_, was_dtype_);
  }
  AutocastRegion(const AutocastRegion&) = delete;
  AutocastRegion& operator=(const AutocastRegion&) = delete;

 private:
  at::DeviceType device_;
  bool active_;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kFloat;
};

Plan make_plan(const TrainerOptions& o, int64_t samples) {
  if (samples <= 0) fail("the training set is empty");
  Plan p;
  p.samples = samples;
  p.micro_per_epoch = (samples + o.micro_batch_size - 1) / o.micro_batch_size;
  // A last, shorter accumulation window at the end of an epoch still makes an optimizer step.
  p.steps_per_epoch = (p.micro_per_epoch + o.gradient_accumulation_steps - 1) / o.gradient_accumulation_steps;
  p.total_steps = o.max_steps > 0
                      ? o.max_steps
                      : static_cast<int64_t>(std::ceil(o.epochs * static_cast<double>(p.steps_per_epoch)));
  p.warmup_steps = warmup_steps_for(p.total_steps, o.warmup_steps, o.warmup_ratio);
  return p;
}

bool lower_is_better(const std::string& metric) { return metric == "loss"; }

int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

std::string checkpoint_name(int64_t step) { return "checkpoint-" + std::to_string(step); }

// Step number of a "checkpoint-N" folder name, or -1.
int64_t checkpoint_step(const std::string& name) {
  const std::string prefix = "checkpoint-";
  if (name.rfind(prefix, 0) != 0 || name.size() == prefix.size()) return -1;
  const std::string digits = name.substr(prefix.size());
  if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

Json state_to_json(const RunState& s, const Plan& p, const TrainerOptions& o) {
  return Json{
      {"global_step", s.global_step},
      {"epoch_index", s.epoch_index},
      {"micro_in_epoch", s.micro_in_epoch},
      {"best_metric", std::isfinite(s.best_metric) ? Json(s.best_metric) : Json(nullptr)},  // null: none yet
      {"best_step", s.best_step},
      {"best_checkpoint", s.best_checkpoint},
      {"evals_without_improvement", s.evals_without_improvement},
      {"skipped_steps", s.skipped_steps},
      {"total_steps", p.total_steps},
      {"samples", p.samples},
      {"micro_batch_size", o.micro_batch_size},
      {"gradient_accumulation_steps", o.gradient_accumulation_steps},
      {"seed", o.seed}};
}

RunState state_from_json(const Json& j, const std::string& path, const Plan& p, const TrainerOptions& o) {
  // The sample order and batch boundaries depend on these; a change would not continue the run.
  for (const auto& [key, expected] : {std::pair<const char*, int64_t>{"samples", p.samples},
                                      {"micro_batch_size", o.micro_batch_size},
                                      {"gradient_accumulation_steps", o.gradient_accumulation_steps},
                                      {"seed", o.seed}}) {
    if (!j.contains(key) || j[key].get<int64_t>() != expected) {
      fail(path + ": cannot resume: '" + key + "' was " + (j.contains(key) ? j[key].dump() : "missing") +
           " in the checkpoint but is " + std::to_string(expected) + " now");
    }
  }
  RunState s;
  try {
    s.global_step = j.at("global_step").get<int64_t>();
    s.epoch_index = j.at("epoch_index").get<int64_t>();
    s.micro_in_epoch = j.at("micro_in_epoch").get<int64_t>();
    s.best_metric = j.at("best_metric").is_null()
                        ? (lower_is_better(o.metric_for_best) ? INFINITY : -INFINITY)
                        : j.at("best_metric").get<double>();
    s.best_step = j.at("best_step").get<int64_t>();
    s.best_checkpoint = j.at("best_checkpoint").get<std::string>();
    s.evals_without_improvement = j.at("evals_without_improvement").get<int64_t>();
    s.skipped_steps = j.value("skipped_steps", int64_t{0});  // absent before mixed precision existed
  } catch (const nlohmann::json::exception& e) {
    fail(path + ": malformed trainer state: " + e.what());
  }
  return s;
}

class Trainer {
 public:
  Trainer(TrainTask& task, const TrainerOptions& options, const LogSink& sink)
      : task_(task), o_(options), sink_(sink), plan_(make_plan(options, task.num_train_samples())) {
    const NamedTensorRefs trainable = task_.trainable_parameters();
    for (const auto& [name, tensor] : trainable) {
      if (!tensor.requires_grad()) fail("trainable parameter '" + name + "' does not require grad");
      trainable_count_ += tensor.numel();
      all_params_.push_back(tensor);
    }
    if (all_params_.empty()) fail("nothing to train: no parameter requires grad");
    AdamWOptions ao;
    ao.beta1 = o_.adam_beta1;
    ao.beta2 = o_.adam_beta2;
    ao.eps = o_.adam_epsilon;
    optimizer_ =
        std::make_unique<AdamW>(decay_groups(trainable, o_.weight_decay), adamw_variant(o_.optim, ao));
    for (const auto& p : all_params_) {
      if (p.scalar_type() != at::kFloat && o_.mixed_precision != "no") {
        fail("train.mixed_precision needs float32 trainable parameters (master weights); one is " +
             std::string(c10::toString(p.scalar_type())));
      }
    }
    device_type_ = all_params_.front().device().type();
    device_index_ = all_params_.front().device().index();
    if (o_.mixed_precision == "fp16") {
      autocast_dtype_ = at::kHalf;
      scaler_ = std::make_unique<DynamicLossScaler>();
    } else if (o_.mixed_precision == "bf16") {
      autocast_dtype_ = at::kBFloat16;
    }
    // Dropout masks are drawn on the device of the activations: a CUDA generator when training on CUDA
    // (a CPU generator cannot drive CUDA dropout). Its state is saved with each checkpoint.
    if (device_type_ == at::kCUDA) {
      generator_ = at::detail::getCUDAHooks().getNewGenerator(device_index_ < 0 ? 0 : device_index_);
      generator_.set_current_seed(static_cast<uint64_t>(o_.seed));
    } else {
      generator_ = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(o_.seed));
    }
    state_.best_metric = lower_is_better(o_.metric_for_best) ? INFINITY : -INFINITY;
  }

  // Returns the global step the checkpoint was taken at.
  int64_t resume(const std::string& dir) {
    const std::string state_path = fsys::join(dir, kStateFile);
    if (!fsys::exists(state_path))
      fail(dir + ": not a complete checkpoint (no " + std::string(kStateFile) + ")");
    state_ = state_from_json(read_json_file(state_path), state_path, plan_, o_);
    task_.load_model(dir);
    const auto opt = SafetensorsFile::open(fsys::join(dir, kOptimizerFile));
    std::vector<std::pair<std::string, at::Tensor>> moments;
    for (const auto& name : opt.names()) moments.emplace_back(name, opt.tensor(name));
    // Skipped (fp16 overflow) steps did not step the optimizer: its bias corrections count the rest.
    optimizer_->load_state(moments, state_.global_step - state_.skipped_steps);
    const auto rng = SafetensorsFile::open(fsys::join(dir, kRngFile));
    const std::string rng_key = device_type_ == at::kCUDA ? "cuda" : "cpu";
    if (!rng.contains(rng_key)) {
      fail(fsys::join(dir, kRngFile) + ": no '" + rng_key +
           "' generator state: the checkpoint was written by a " + (rng_key == "cuda" ? "CPU" : "CUDA") +
           " run; resume it on the same kind of device (train.device)");
    }
    generator_.set_state(rng.tensor(rng_key).clone());
    if (scaler_) {
      const std::string path = fsys::join(dir, kScalerFile);
      if (!fsys::exists(path))
        fail(dir + ": no " + std::string(kScalerFile) + " to resume fp16 training from");
      const auto file = SafetensorsFile::open(path);
      std::vector<std::pair<std::string, at::Tensor>> saved;
      for (const auto& name : file.names()) saved.emplace_back(name, file.tensor(name));
      scaler_->load_state(saved);
    }
    log::info("resumed from " + dir + " at step " + std::to_string(state_.global_step));
    return state_.global_step;
  }

  TrainSummary run() {
    fsys::create_directories(o_.output_dir);
    if (device_type_ == at::kCUDA) c10::getDeviceAllocator(at::kCUDA)->resetPeakStats(device_index_);
    const auto start = std::chrono::steady_clock::now();
    Progress progress("train", plan_.total_steps);
    double window_loss = 0;
    int64_t window_steps = 0, window_tokens = 0, window_samples = 0;
    auto window_start = std::chrono::steady_clock::now();
    bool stop = state_.global_step >= plan_.total_steps;
    std::string last_saved;

    while (!stop) {
      const auto order = data::shuffled_indices(static_cast<size_t>(plan_.samples),
                                                static_cast<uint64_t>(o_.seed + state_.epoch_index));
      bool epoch_end = false;
      while (!stop && !epoch_end) {
        const int64_t window =
            std::min(o_.gradient_accumulation_steps, plan_.micro_per_epoch - state_.micro_in_epoch);
        double step_loss = 0;
        for (int64_t k = 0; k < window; ++k) {
          const int64_t micro = state_.micro_in_epoch + k;
          const size_t begin = static_cast<size_t>(micro * o_.micro_batch_size);
          const size_t end = std::min(order.size(), begin + static_cast<size_t>(o_.micro_batch_size));
          const std::vector<size_t> indices(order.begin() + static_cast<std::ptrdiff_t>(begin),
                                            order.begin() + static_cast<std::ptrdiff_t>(end));
          nn::ForwardContext ctx;
          ctx.training = true;
          ctx.generator = generator_;
          ctx.gradient_checkpointing = o_.gradient_checkpointing;
          MicroBatchLoss out;
          {
            AutocastRegion autocast(device_type_, autocast_dtype_);
            out = task_.train_loss(indices, ctx);
          }
          const at::Tensor loss = out.loss / static_cast<double>(window);
          (scaler_ ? scaler_->scale(loss) : loss).backward();
          step_loss += out.loss.item<double>() / static_cast<double>(window);
          window_tokens += out.tokens;
          window_samples += static_cast<int64_t>(indices.size());
        }
        state_.micro_in_epoch += window;
        // fp16: unscale before clipping; an inf/nan gradient skips the optimizer step and, as in
        // transformers' Trainer (optimizer_step_was_skipped), the scheduler step.
        const bool overflow = scaler_ && scaler_->unscale(all_params_);
        const double grad_norm = o_.max_grad_norm > 0 ? clip_grad_norm(all_params_, o_.max_grad_norm) : NAN;
        const double lr =
            o_.learning_rate * lr_factor({o_.lr_scheduler, plan_.total_steps, plan_.warmup_steps},
                                         state_.global_step - state_.skipped_steps);
        if (overflow) {
          ++state_.skipped_steps;
          log::debug("step " + std::to_string(state_.global_step + 1) + ": inf/nan gradients at loss scale " +
                     std::to_string(scaler_->scale_value()) + ", optimizer step skipped");
        } else {
          optimizer_->step(lr);
        }
        if (scaler_) scaler_->update();
        optimizer_->zero_grad();
        ++state_.global_step;
        window_loss += step_loss;
        ++window_steps;

        epoch_end = state_.micro_in_epoch >= plan_.micro_per_epoch;
        if (epoch_end) {  // The next epoch draws a new sample order (outer loop).
          ++state_.epoch_index;
          state_.micro_in_epoch = 0;
        }
        const double epoch =
            static_cast<double>(state_.epoch_index) +
            static_cast<double>(state_.micro_in_epoch) / static_cast<double>(plan_.micro_per_epoch);
        const bool last = state_.global_step >= plan_.total_steps;

        if (state_.global_step % o_.logging_steps == 0 || last) {
          const double secs =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - window_start).count();
          last_loss_ = window_loss / static_cast<double>(window_steps);
          Json rec = {{"step", state_.global_step},
                      {"epoch", epoch},
                      {"split", "train"},
                      {"loss", last_loss_},
                      {"learning_rate", lr},
                      {"grad_norm", grad_norm},
                      {"tokens_per_second", secs > 0 ? window_tokens / secs : 0.0},
                      {"samples_per_second", secs > 0 ? window_samples / secs : 0.0}};
          if (scaler_) {
            rec["loss_scale"] = scaler_->scale_value();
            rec["skipped_steps"] = state_.skipped_steps;
          }
          emit(rec);
          window_loss = 0;
          window_steps = window_tokens = window_samples = 0;
          window_start = std::chrono::steady_clock::now();
        }
        char loss_text[32], lr_text[32];
        std::snprintf(loss_text, sizeof loss_text, "%.4f", step_loss);
        std::snprintf(lr_text, sizeof lr_text, "%.2e", lr);
        if (o_.show_progress) progress.update(state_.global_step, {{"loss", loss_text}, {"lr", lr_text}});

        const bool do_eval =
            o_.eval_steps > 0 ? (state_.global_step % o_.eval_steps == 0 || last) : (epoch_end || last);
        bool improved = false;
        if (do_eval) improved = evaluate(epoch);
        const bool do_save =
            (o_.save_steps > 0 ? state_.global_step % o_.save_steps == 0 : epoch_end) || last || improved;
        if (do_save) last_saved = save_checkpoint(improved);
        if (o_.early_stopping_patience > 0 &&
            state_.evals_without_improvement >= o_.early_stopping_patience) {
          log::info("early stopping: " + std::to_string(state_.evals_without_improvement) +
                    " evaluations without " + "improvement of " + o_.metric_for_best);
          stopped_early_ = true;
          if (!do_save) last_saved = save_checkpoint(false);
          stop = true;
        }
        if (last) stop = true;
      }
    }
    progress.finish();

    TrainSummary summary;
    summary.global_step = state_.global_step;
    summary.epoch = static_cast<double>(state_.epoch_index) +
                    static_cast<double>(state_.micro_in_epoch) / static_cast<double>(plan_.micro_per_epoch);
    summary.train_loss = last_loss_;
    summary.best_metric_name = o_.metric_for_best;
    summary.best_metric = state_.best_metric;
    summary.best_step = state_.best_step;
    summary.best_checkpoint = state_.best_checkpoint;
    summary.final_checkpoint = last_saved;
    summary.stopped_early = stopped_early_;
    summary.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    summary.peak_rss_bytes = peak_rss_bytes();
    summary.skipped_steps = state_.skipped_steps;
    if (device_type_ == at::kCUDA) {
      // The device-generic allocator interface: no CUDA headers, so this builds with QLORA_CUDA=OFF.
      const auto stats = c10::getDeviceAllocator(at::kCUDA)->getDeviceStats(device_index_);
      summary.peak_cuda_allocated_bytes =
          stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
    }
    summary.trainable_parameters = trainable_count_;
    write_file_atomic(fsys::join(o_.output_dir, "run_summary.json"), summary.to_json().dump(2) + "\n");
    return summary;
  }

 private:
  void emit(const Json& record) {
    if (sink_) sink_(record);
  }

  // Runs the task's evaluation; returns true when the tracked metric improved.
  bool evaluate(double epoch) {
    Json metrics;
    {
      at::NoGradGuard no_grad;
      AutocastRegion autocast(device_type_, autocast_dtype_);  // HF evaluates under autocast too
      metrics = task_.evaluate();
    }
    if (metrics.empty()) return false;
    Json rec = {{"step", state_.global_step}, {"epoch", epoch}, {"split", "eval"}};
    rec.update(metrics);
    emit(rec);
    if (!metrics.contains(o_.metric_for_best)) {
      fail("train.metric_for_best is '" + o_.metric_for_best + "' but the evaluation reports " +
           metrics.dump());
    }
    const double value = metrics[o_.metric_for_best].get<double>();
    const bool better =
        lower_is_better(o_.metric_for_best) ? value < state_.best_metric : value > state_.best_metric;
    if (better) {
      state_.best_metric = value;
      state_.best_step = state_.global_step;
      state_.best_checkpoint = fsys::join(o_.output_dir, checkpoint_name(state_.global_step));
      state_.evals_without_improvement = 0;
    } else {
      ++state_.evals_without_improvement;
    }
    return better;
  }

  // Writes checkpoint-<step> atomically: everything goes into a temporary folder, the trainer
  // state last, then one rename publishes it. A kill at any moment leaves the previous
  // checkpoints intact and at most a stale temporary folder, which the next save removes.
  std::string save_checkpoint(bool is_best) {
    const std::string final_dir = fsys::join(o_.output_dir, checkpoint_name(state_.global_step));
    const std::string tmp = fsys::join(o_.output_dir, "." + checkpoint_name(state_.global_step) + ".tmp");
    fsys::remove_all(tmp);
    fsys::create_directories(tmp);
    task_.save_model(tmp);
    save_safetensors(fsys::join(tmp, kOptimizerFile), optimizer_->state());
    save_safetensors(fsys::join(tmp, kRngFile),
                     {{device_type_ == at::kCUDA ? "cuda" : "cpu", generator_.get_state()}});
    if (scaler_) save_safetensors(fsys::join(tmp, kScalerFile), scaler_->state());
    write_file_atomic(fsys::join(tmp, kStateFile), state_to_json(state_, plan_, o_).dump(2) + "\n");
    fsys::remove_all(final_dir);
    fsys::rename_path(tmp, final_dir);
    rotate_checkpoints();
    log::debug("saved " + final_dir + (is_best ? " (best)" : ""));
    return final_dir;
  }

  // Keeps the newest save_total_limit checkpoints plus the best one.
  void rotate_checkpoints() {
    std::vector<std::pair<int64_t, std::string>> found;
    for (const auto& name : fsys::list_directory(o_.output_dir)) {
      const int64_t step = checkpoint_step(name);
      if (step >= 0) found.emplace_back(step, name);
    }
    std::sort(found.rbegin(), found.rend());
    for (size_t i = static_cast<size_t>(o_.save_total_limit); i < found.size(); ++i) {
      if (found[i].first == state_.best_step) continue;
      fsys::remove_all(fsys::join(o_.output_dir, found[i].second));
    }
  }

  TrainTask& task_;
  TrainerOptions o_;
  LogSink sink_;
  Plan plan_;
  RunState state_;
  std::vector<at::Tensor> all_params_;
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<DynamicLossScaler> scaler_;  // fp16 only
  at::DeviceType device_type_ = at::kCPU;      // of the trainable parameters: where autocast applies
  c10::DeviceIndex device_index_ = -1;
  std::optional<at::ScalarType> autocast_dtype_;
  at::Generator generator_;
  int64_t trainable_count_ = 0;
  double last_loss_ = NAN;
  bool stopped_early_ = false;
};

}  // namespace

Json TrainSummary::to_json() const {
  return Json{{"global_step", global_step},
              {"epoch", epoch},
              {"train_loss", train_loss},
              {"best_metric_name", best_metric_name},
              {"best_metric", std::isfinite(best_metric) ? Json(best_metric) : Json(nullptr)},
              {"best_step", best_step},
              {"best_checkpoint", best_checkpoint},
              {"final_checkpoint", final_checkpoint},
              {"stopped_early", stopped_early},
              {"train_seconds", train_seconds},
              {"peak_rss_bytes", peak_rss_bytes},
              {"peak_cuda_allocated_bytes", peak_cuda_allocated_bytes},
              {"skipped_steps", skipped_steps},
              {"trainable_parameters", trainable_parameters}};
}

std::string latest_checkpoint(const std::string& output_dir) {
  if (!fsys::is_directory(output_dir)) return "";
  int64_t best = -1;
  std::string path;
  for (const auto& name : fsys::list_directory(output_dir)) {
    const int64_t step = checkpoint_step(name);
    const std::string dir = fsys::join(output_dir, name);
    if (step > best && fsys::exists(fsys::join(dir, kStateFile))) {
      best = step;
      path = dir;
    }
  }
  return path;
}

TrainSummary run_training(TrainTask& task, const TrainerOptions& options, const std::string& resume_from,
                          const LogSink& sink, const std::function<void(int64_t step)>& on_resume) {
  check_options(options);
  Trainer trainer(task, options, sink);
  if (!resume_from.empty()) {
    const std::string dir = resume_from == "latest" ? latest_checkpoint(options.output_dir) : resume_from;
    if (dir.empty()) fail(options.output_dir + ": no checkpoint to resume from");
    const int64_t step = trainer.resume(dir);
    if (on_resume) on_resume(step);
  }
  return trainer.run();
}

}  // namespace qlora::train
