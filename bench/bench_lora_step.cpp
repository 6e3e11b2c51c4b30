// Throughput and peak memory of one LoRA training step (forward + QA loss + backward + grad clip +
// AdamW) on an encoder QA model, as qlora's trainer runs it. bench/bench_lora_step.py times the same
// step with transformers + peft; bench/run.sh runs both and prints the ratios. Prints one JSON line.
//
//   bench_lora_step --model /tmp/qlora-bench/xlmr-base --batch 8 --seq 384 --warmup 1 --steps 3
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"
#include "qlora/models/encoder.h"
#include "qlora/peft/lora_config.h"
#include "qlora/peft/lora_model.h"
#include "qlora/train/optimizer.h"

namespace {

using namespace qlora;

struct BenchOptions {
  std::string model_dir;  // HF folder of an XxxForQuestionAnswering model
  int64_t batch = 8;      // B: micro batch (run_qa's per_device_train_batch_size)
  int64_t seq = 384;      // T: tokens per window (run_qa's max_seq_length)
  int64_t warmup = 1;     // untimed steps first (allocator, oneDNN primitive caches)
  int64_t steps = 3;      // timed steps
  int64_t threads = 0;    // at::set_num_threads; 0 keeps libtorch's default
  uint64_t seed = 1234;   // batch, LoRA init and dropout
  double lr = 3e-4;       // configs/xlmr_vi_qa.yaml
  double weight_decay = 0.01;
  double max_grad_norm = 1.0;
};

Json run(const BenchOptions& o) {
  if (o.threads > 0) at::set_num_threads(static_cast<int>(o.threads));
  const auto t_load = std::chrono::steady_clock::now();
  models::EncoderModel model = models::load_encoder(o.model_dir, {models::EncoderHead::kQuestionAnswering});
  peft::PeftModelView view = peft::peft_view(model);
  peft::LoraConfig lora;
  lora.r = 16;
  lora.lora_alpha = 32;
  lora.lora_dropout = 0.1;
  lora.target_modules = peft::NameSpec::list({"query", "value"});
  lora.modules_to_save = std::vector<std::string>{"qa_outputs"};
  lora.task_type = "QUESTION_ANS";
  const peft::LoraSummary adapter = peft::attach_lora(view, lora, o.seed);
  const qlora_bench::LoadInfo info = qlora_bench::after_load(t_load);

  // The trainer's two groups: biases and LayerNorm weights skip the decay.
  const auto named = qlora_bench::named_trainable(adapter.trainable);
  const std::vector<at::Tensor> params = qlora_bench::tensors_of(named);
  train::AdamW optimizer(train::decay_groups(named, o.weight_decay), {});

  // Same draws as bench_lora_step.py (one CPU generator, same seed, same order): full windows,
  // <s> ... </s>, an answer span in the first half.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const int64_t B = o.batch, T = o.seq, V = model.config.vocab_size;
  at::Tensor input_ids = at::randint(5, V, {B, T}, gen, at::kLong);  // [B, T]
  input_ids.select(1, 0).fill_(0);
  input_ids.select(1, T - 1).fill_(2);
  const at::Tensor attention_mask = at::ones({B, T}, at::kLong);
  const at::Tensor start_positions = at::randint(1, T / 2, {B}, gen, at::kLong);
  const at::Tensor end_positions = start_positions + at::randint(0, 16, {B}, gen, at::kLong);

  nn::ForwardContext ctx;
  ctx.training = true;
  ctx.generator = at::make_generator<at::CPUGeneratorImpl>(o.seed + 1);
  std::vector<double> step_ms;
  double first_loss = 0;
  for (int64_t step = 0; step < o.warmup + o.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    const models::QaLogits logits = models::qa_forward(model, {input_ids, attention_mask, {}}, ctx);
    const at::Tensor loss = models::qa_loss(logits.start, logits.end, start_positions, end_positions);
    loss.backward();
    train::clip_grad_norm(params, o.max_grad_norm);
    optimizer.step(o.lr);
    optimizer.zero_grad();
    const double loss_value = loss.item<double>();
    const double ms = qlora_bench::ms_since(t0);
    if (step == 0) first_loss = loss_value;
    if (step >= o.warmup) step_ms.push_back(ms);
  }

  const double med_ms = qlora_bench::median(step_ms);
  Json out;
  out["impl"] = "qlora";
  out["attn"] = "eager";
  out["batch"] = B;
  out["seq"] = T;
  out["vocab"] = V;
  out["warmup"] = o.warmup;
  out["steps"] = o.steps;
  out["threads"] = at::get_num_threads();
  out["samples_per_s"] = 1000.0 * static_cast<double>(B) / med_ms;
  out["tokens_per_s"] = 1000.0 * static_cast<double>(B * T) / med_ms;
  out["median_step_ms"] = med_ms;
  out["step_ms"] = step_ms;
  qlora_bench::add_memory(out, info);
  out["train_peak_rss_mib"] = out["run_peak_rss_mib"];  // the name bench/run.sh and bench_lora_step.py use
  out.erase("run_peak_rss_mib");
  out["trainable_params"] = adapter.trainable_params;
  out["first_loss"] = first_loss;
  out["input_ids_sum"] = input_ids.sum().item<int64_t>();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions o;
  CLI::App app("Times LoRA training steps of qlora on an encoder QA model; prints one JSON line.");
  app.add_option("--model", o.model_dir, "HF folder of an XxxForQuestionAnswering model")->required();
  app.add_option("--batch", o.batch, "B: micro batch size")->check(CLI::PositiveNumber);
  app.add_option("--seq", o.seq, "T: tokens per window")->check(CLI::Range(4, 100000));
  app.add_option("--warmup", o.warmup, "untimed steps first")->check(CLI::NonNegativeNumber);
  app.add_option("--steps", o.steps, "timed steps")->check(CLI::PositiveNumber);
  app.add_option("--threads", o.threads, "intra-op threads; 0 = libtorch's default")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", o.seed, "seed of the batch, the LoRA init and dropout");
  CLI11_PARSE(app, argc, argv);
  try {
    std::cout << run(o).dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "bench_lora_step: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
