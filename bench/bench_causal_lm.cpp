// Decoder LLM benchmarks of qlora, one mode per process; bench/bench_causal_lm.py is the
// transformers + peft side and bench/run_llm.sh runs both and prints the ratios. Prints one JSON line.
//
//   bench_causal_lm --mode train --model /tmp/qlora-bench/llama-small --batch 4 --seq 256
//   bench_causal_lm --mode generate --model /tmp/qlora-bench/llama-small --prompt 256 --new 64
//
// train: one LoRA SFT step (r 16 on q_proj, v_proj, CAUSAL_LM) as SftTrainTask runs it: hidden states +
// causal_lm_loss_sum (lm_head + cross entropy in chunks of --loss-chunk tokens) / count + backward +
// clip_grad_norm + AdamW + zero_grad.
// generate: prefill of one prompt on an empty KV cache (timed alone), then infer::generate greedy with
// no eos id, so that every run emits exactly --new tokens.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.h"
#include "qlora/core/jsonl.h"
#include "qlora/infer/generate.h"
#include "qlora/models/causal_lm.h"
#include "qlora/peft/lora_config.h"
#include "qlora/peft/lora_model.h"
#include "qlora/tasks/sft_task.h"
#include "qlora/train/optimizer.h"

namespace {

using namespace qlora;
using qlora_bench::add_memory;
using qlora_bench::after_load;
using qlora_bench::LoadInfo;
using qlora_bench::median;
using qlora_bench::ms_since;
using qlora_bench::proc_status_mib;
using Clock = std::chrono::steady_clock;

struct BenchOptions {
  std::string mode = "train";  // "train" or "generate"
  std::string model_dir;       // HF folder of a *ForCausalLM model
  int64_t batch = 4;           // B (train)
  int64_t seq = 256;           // T (train)
  int64_t prompt = 256;        // prompt tokens (generate, batch 1)
  int64_t new_tokens = 64;     // generated tokens (generate)
  int64_t warmup = 1;          // untimed iterations first
  int64_t steps = 3;           // timed iterations
  int64_t threads = 0;         // at::set_num_threads; 0 keeps libtorch's default
  uint64_t seed = 1234;        // inputs, LoRA init and dropout
  int64_t loss_chunk = 512;    // train.loss_chunk_tokens (0: the head on all tokens at once)
  double lr = 2e-4;
  double weight_decay = 0.0;  // transformers' TrainingArguments default
  double max_grad_norm = 1.0;
};

Json run_train(const BenchOptions& o) {
  const auto t_load = Clock::now();
  std::unique_ptr<models::CausalLM> model = models::load_causal_lm(o.model_dir);
  peft::PeftModelView view = peft::peft_view(*model);
  peft::LoraConfig lora;
  lora.r = 16;
  lora.lora_alpha = 32;
  lora.lora_dropout = 0.05;
  lora.target_modules = peft::NameSpec::list({"q_proj", "v_proj"});
  lora.task_type = "CAUSAL_LM";
  const peft::LoraSummary adapter = peft::attach_lora(view, lora, o.seed);
  const LoadInfo info = after_load(t_load);

  const auto named = qlora_bench::named_trainable(adapter.trainable);
  const std::vector<at::Tensor> params = qlora_bench::tensors_of(named);
  train::AdamW optimizer(train::decay_groups(named, o.weight_decay), {});

  // Same draws as bench_causal_lm.py: full rows of random ids after BOS, labels = inputs.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const int64_t B = o.batch, T = o.seq, V = model->vocab_size();
  at::Tensor input_ids = at::randint(3, V, {B, T}, gen, at::kLong);  // [B, T]
  input_ids.select(1, 0).fill_(1);
  const at::Tensor attention_mask = at::ones({B, T}, at::kLong);

  nn::ForwardContext ctx;
  ctx.training = true;
  ctx.generator = at::make_generator<at::CPUGeneratorImpl>(o.seed + 1);
  std::vector<double> step_ms;
  double first_loss = 0;
  for (int64_t step = 0; step < o.warmup + o.steps; ++step) {
    const auto t0 = Clock::now();
    const auto lm_loss =
        tasks::causal_lm_loss_sum(*model, {input_ids, attention_mask, {}, {}}, input_ids, o.loss_chunk, ctx);
    const at::Tensor loss = lm_loss.sum / static_cast<double>(lm_loss.count);
    loss.backward();
    train::clip_grad_norm(params, o.max_grad_norm);
    optimizer.step(o.lr);
    optimizer.zero_grad();
    const double loss_value = loss.item<double>();
    const double ms = ms_since(t0);
    if (step == 0) first_loss = loss_value;
    if (step >= o.warmup) step_ms.push_back(ms);
  }

  const double med_ms = median(step_ms);
  Json out;
  out["impl"] = "qlora";
  out["mode"] = "train";
  out["attn"] = "eager";
  out["batch"] = B;
  out["seq"] = T;
  out["warmup"] = o.warmup;
  out["steps"] = o.steps;
  out["loss_chunk"] = o.loss_chunk;
  out["threads"] = at::get_num_threads();
  out["tokens_per_s"] = 1000.0 * static_cast<double>(B * T) / med_ms;
  out["median_ms"] = med_ms;
  out["step_ms"] = step_ms;
  add_memory(out, info);
  out["trainable_params"] = adapter.trainable_params;
  out["first_loss"] = first_loss;
  out["input_ids_sum"] = input_ids.sum().item<int64_t>();
  return out;
}

Json run_generate(const BenchOptions& o) {
  const auto t_load = Clock::now();
  std::unique_ptr<models::CausalLM> model = models::load_causal_lm(o.model_dir);
  const LoadInfo info = after_load(t_load);

  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const int64_t L = o.prompt, V = model->vocab_size();
  at::Tensor prompt = at::randint(3, V, {1, L}, gen, at::kLong);  // [1, L]
  prompt.select(1, 0).fill_(1);
  const at::Tensor mask = at::ones({1, L}, at::kLong);

  // Prefill alone: the prompt through an empty cache, as generate's first forward.
  std::vector<double> prefill_ms;
  {
    at::InferenceMode inference;
    const nn::ForwardContext ctx;
    for (int64_t i = 0; i < o.warmup + o.steps; ++i) {
      models::KvCache cache;
      const auto t0 = Clock::now();
      const models::CausalLmOutput out = model->forward({prompt, mask, {}, {}}, &cache, ctx);
      (void)out.logits.select(1, L - 1).argmax(-1).item<int64_t>();  // as generate picks its first token
      const double ms = ms_since(t0);
      if (i >= o.warmup) prefill_ms.push_back(ms);
    }
  }

  infer::GenerateOptions gen_options;
  gen_options.max_new_tokens = o.new_tokens;
  gen_options.do_sample = false;
  gen_options.eos_token_ids = {};  // never stops early: every run emits new_tokens tokens
  gen_options.pad_token_id = 0;
  std::vector<double> generate_ms;
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < o.warmup + o.steps; ++i) {
    const auto t0 = Clock::now();
    const infer::GenerateResult result = infer::generate(*model, prompt, mask, gen_options);
    const double ms = ms_since(t0);
    if (i >= o.warmup) generate_ms.push_back(ms);
    ids = result.rows.at(0).ids;
  }

  const double prefill_med = median(prefill_ms), generate_med = median(generate_ms);
  // generate = prefill (which yields the first token) + new_tokens - 1 decode steps.
  const double decode_ms_per_token = (generate_med - prefill_med) / static_cast<double>(o.new_tokens - 1);
  Json out;
  out["impl"] = "qlora";
  out["mode"] = "generate";
  out["attn"] = "eager";
  out["prompt"] = L;
  out["new_tokens"] = o.new_tokens;
  out["warmup"] = o.warmup;
  out["steps"] = o.steps;
  out["threads"] = at::get_num_threads();
  out["prefill_ms"] = prefill_ms;
  out["prefill_median_ms"] = prefill_med;
  out["prefill_tokens_per_s"] = 1000.0 * static_cast<double>(L) / prefill_med;
  out["generate_ms"] = generate_ms;
  out["generate_median_ms"] = generate_med;
  out["decode_ms_per_token"] = decode_ms_per_token;
  out["decode_tokens_per_s"] = 1000.0 / decode_ms_per_token;
  out["generated_tokens"] = static_cast<int64_t>(ids.size());
  out["ids"] = ids;
  add_memory(out, info);
  out["input_ids_sum"] = prompt.sum().item<int64_t>();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions o;
  CLI::App app(
      "Times qlora on a decoder LLM (LoRA training step or greedy generation); prints one JSON line.");
  app.add_option("--mode", o.mode, "train or generate")->check(CLI::IsMember({"train", "generate"}));
  app.add_option("--model", o.model_dir, "HF folder of a *ForCausalLM model")->required();
  app.add_option("--batch", o.batch, "train: B")->check(CLI::PositiveNumber);
  app.add_option("--seq", o.seq, "train: T tokens per row")->check(CLI::Range(2, 100000));
  app.add_option("--prompt", o.prompt, "generate: prompt tokens")->check(CLI::PositiveNumber);
  app.add_option("--new", o.new_tokens, "generate: new tokens")->check(CLI::Range(2, 100000));
  app.add_option("--warmup", o.warmup, "untimed iterations first")->check(CLI::NonNegativeNumber);
  app.add_option("--steps", o.steps, "timed iterations")->check(CLI::PositiveNumber);
  app.add_option("--threads", o.threads, "intra-op threads; 0 = libtorch's default")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", o.seed, "seed of the inputs, the LoRA init and dropout");
  app.add_option("--loss-chunk", o.loss_chunk, "train: train.loss_chunk_tokens (0: no chunking)")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  try {
    if (o.threads > 0) at::set_num_threads(static_cast<int>(o.threads));
    std::cout << (o.mode == "train" ? run_train(o) : run_generate(o)).dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "bench_causal_lm: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
