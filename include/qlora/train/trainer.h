// The training engine shared by every model family: epochs or max_steps over a seeded sample
// order, micro batches with gradient accumulation, AdamW with warmup + linear/cosine/constant
// schedules, clipping, periodic evaluation, best-checkpoint tracking, early stopping, atomic
// checkpoints and exact resume. Families plug in through TrainTask. Memory features: gradient
// checkpointing (through ForwardContext), fp16/bf16 autocast with fp32 master weights and dynamic
// loss scaling (loss_scaler.h), host-offloaded and 8-bit AdamW states (optimizer.h).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "qlora/core/jsonl.h"
#include "qlora/nn/lora_linear.h"

namespace qlora::train {

using NamedTensorRefs = std::vector<std::pair<std::string, at::Tensor>>;

struct MicroBatchLoss {
  at::Tensor loss;     // scalar, mean over the micro batch, with autograd
  int64_t tokens = 0;  // non-padding tokens in the micro batch (for tokens/s)
};

// What the engine trains. A model family + task (XLM-R QA, T5 seq2seq, LLaMA SFT) implements it.
class TrainTask {
 public:
  virtual ~TrainTask() = default;
  virtual int64_t num_train_samples() const = 0;
  // Forward + loss of the training samples `indices` (autograd on).
  virtual MicroBatchLoss train_loss(const std::vector<size_t>& indices, const nn::ForwardContext& ctx) = 0;
  // Metrics on the validation set (eval mode, no grad); must hold "loss". Empty object: no valid set.
  virtual Json evaluate() = 0;
  // Trainable parameters by name (leaf tensors with requires_grad).
  virtual NamedTensorRefs trainable_parameters() = 0;
  // Writes what a user loads later (a PEFT adapter, or full weights) into the existing folder `dir`.
  virtual void save_model(const std::string& dir) = 0;
  // Restores the trainable weights saved by save_model.
  virtual void load_model(const std::string& dir) = 0;
};

struct TrainerOptions {
  std::string output_dir;
  double epochs = 3;
  int64_t max_steps = -1;
  int64_t micro_batch_size = 8;
  int64_t gradient_accumulation_steps = 1;
  double learning_rate = 2e-4;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8;
  std::string lr_scheduler = "linear";
  int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;
  double max_grad_norm = 1.0;
  int64_t seed = 42;
  int64_t logging_steps = 10;
  int64_t eval_steps = 0;        // 0: evaluate at epoch ends
  int64_t save_steps = 0;        // 0: checkpoint at epoch ends
  int64_t save_total_limit = 2;  // newest step checkpoints kept, besides the best
  std::string metric_for_best = "loss";
  int64_t early_stopping_patience = 0;
  bool show_progress = true;
  // Memory features (transformers' gradient_checkpointing / fp16 / bf16 / optim).
  bool gradient_checkpointing = false;  // sets ForwardContext::gradient_checkpointing for train_loss
  std::string mixed_precision = "no";   // no, fp16 (autocast + dynamic loss scaling), bf16 (autocast)
  std::string optim = "adamw_torch";    // adamw_torch, paged_adamw_32bit, adamw_8bit, paged_adamw_8bit
};

struct TrainSummary {
  int64_t global_step = 0;
  double epoch = 0;
  double train_loss = 0;  // mean loss over the last logging window
  std::string best_metric_name;
  double best_metric = 0;
  int64_t best_step = -1;
  std::string best_checkpoint;
  std::string final_checkpoint;
  bool stopped_early = false;
  double train_seconds = 0;
  int64_t peak_rss_bytes = 0;
  int64_t peak_cuda_allocated_bytes = -1;  // -1: not trained on CUDA (or not measurable in this build)
  int64_t skipped_steps = 0;               // fp16: optimizer steps skipped for inf/nan gradients
  int64_t trainable_parameters = 0;
  Json to_json() const;
};

// Called with every record written to metrics.jsonl (train logs and evaluations).
using LogSink = std::function<void(const Json& record)>;

// Runs training. `resume_from` is "" (fresh), a checkpoint folder, or "latest" (the newest
// complete checkpoint in output_dir).
// `on_resume(step)` is called once the checkpoint to resume from is loaded, before any step runs.
TrainSummary run_training(TrainTask& task, const TrainerOptions& options, const std::string& resume_from = "",
                          const LogSink& sink = nullptr,
                          const std::function<void(int64_t step)>& on_resume = nullptr);

// Newest complete checkpoint-N folder under output_dir, or "" when there is none.
std::string latest_checkpoint(const std::string& output_dir);

}  // namespace qlora::train
