// T5 benchmarks of qlora, one mode per process; bench/bench_seq2seq.py is the transformers + peft side
// and bench/run_llm.sh runs both and prints the ratios. Prints one JSON line.
//
//   bench_seq2seq --mode train --model /tmp/qlora-bench/t5-small-gated --batch 8 --source 256 --target 64
//   bench_seq2seq --mode beam --model /tmp/qlora-bench/t5-small-gated --batch 4 --source 128 --beams 4 --new
//   32
//
// train: one LoRA step (r 16 on q, v, SEQ_2_SEQ_LM) as Seq2SeqTrainTask runs it: seq2seq_forward with
// labels (mean cross-entropy) + backward + clip_grad_norm + AdamW + zero_grad, dropout on.
// beam: infer::seq2seq_generate with num_beams, max_new_tokens and the model's generation_config.json.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "qlora/core/jsonl.h"
#include "qlora/infer/seq2seq_generate.h"
#include "qlora/io/hf_config.h"
#include "qlora/models/t5.h"
#include "qlora/peft/lora_config.h"
#include "qlora/peft/lora_model.h"
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
  std::string mode = "train";  // "train" or "beam"
  std::string model_dir;       // HF folder of a T5ForConditionalGeneration model
  int64_t batch = 8;           // B
  int64_t source = 256;        // S: encoder tokens per row
  int64_t target = 64;         // T: label tokens per row (train)
  int64_t beams = 4;           // num_beams (beam)
  int64_t new_tokens = 32;     // max_new_tokens (beam)
  int64_t warmup = 1;          // untimed iterations first
  int64_t steps = 3;           // timed iterations
  int64_t threads = 0;         // at::set_num_threads; 0 keeps libtorch's default
  uint64_t seed = 1234;        // inputs, LoRA init and dropout
  double lr = 3e-4;
  double weight_decay = 0.0;  // transformers' TrainingArguments default
  double max_grad_norm = 1.0;
};

// Rows of random ids ending with EOS (1), as a T5 tokenizer ends every sequence: [B, L].
at::Tensor random_rows(int64_t B, int64_t L, int64_t V, at::Generator& gen) {
  at::Tensor ids = at::randint(2, V, {B, L}, gen, at::kLong);
  ids.select(1, L - 1).fill_(1);
  return ids;
}

Json run_train(const BenchOptions& o) {
  const auto t_load = Clock::now();
  models::T5Model model = models::load_t5(o.model_dir);
  peft::PeftModelView view = peft::peft_view(model);
  peft::LoraConfig lora;
  lora.r = 16;
  lora.lora_alpha = 32;
  lora.lora_dropout = 0.05;
  lora.target_modules = peft::NameSpec::list({"q", "v"});
  lora.task_type = "SEQ_2_SEQ_LM";
  const peft::LoraSummary adapter = peft::attach_lora(view, lora, o.seed);
  const LoadInfo info = after_load(t_load);

  const auto named = qlora_bench::named_trainable(adapter.trainable);
  const std::vector<at::Tensor> params = qlora_bench::tensors_of(named);
  train::AdamW optimizer(train::decay_groups(named, o.weight_decay), {});

  // Same draws as bench_seq2seq.py: sources, then labels.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const int64_t B = o.batch, S = o.source, T = o.target, V = model.config.vocab_size;
  const at::Tensor input_ids = random_rows(B, S, V, gen);  // [B, S]
  const at::Tensor labels = random_rows(B, T, V, gen);     // [B, T]
  const at::Tensor attention_mask = at::ones({B, S}, at::kLong);

  nn::ForwardContext ctx;
  ctx.training = true;
  ctx.generator = at::make_generator<at::CPUGeneratorImpl>(o.seed + 1);
  std::vector<double> step_ms;
  double first_loss = 0;
  for (int64_t step = 0; step < o.warmup + o.steps; ++step) {
    const auto t0 = Clock::now();
    const models::Seq2SeqOutput out =
        models::seq2seq_forward(model, {input_ids, attention_mask, labels, {}}, ctx);
    out.loss.backward();
    train::clip_grad_norm(params, o.max_grad_norm);
    optimizer.step(o.lr);
    optimizer.zero_grad();
    const double loss_value = out.loss.item<double>();
    const double ms = ms_since(t0);
    if (step == 0) first_loss = loss_value;
    if (step >= o.warmup) step_ms.push_back(ms);
  }

  const double med_ms = median(step_ms);
  Json out;
  out["impl"] = "qlora";
  out["mode"] = "train";
  out["batch"] = B;
  out["source"] = S;
  out["target"] = T;
  out["warmup"] = o.warmup;
  out["steps"] = o.steps;
  out["threads"] = at::get_num_threads();
  // Source and target tokens both count: the encoder runs B*S of them, the decoder B*T.
  out["tokens_per_s"] = 1000.0 * static_cast<double>(B * (S + T)) / med_ms;
  out["samples_per_s"] = 1000.0 * static_cast<double>(B) / med_ms;
  out["median_ms"] = med_ms;
  out["step_ms"] = step_ms;
  add_memory(out, info);
  out["trainable_params"] = adapter.trainable_params;
  out["first_loss"] = first_loss;
  out["input_ids_sum"] = input_ids.sum().item<int64_t>() + labels.sum().item<int64_t>();
  return out;
}

Json run_beam(const BenchOptions& o) {
  const auto t_load = Clock::now();
  const models::T5Model model = models::load_t5(o.model_dir);
  GenerationConfig gen_config = GenerationConfig::load(o.model_dir);
  const LoadInfo info = after_load(t_load);
  gen_config.num_beams = o.beams;
  gen_config.max_new_tokens = o.new_tokens;

  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const int64_t B = o.batch, S = o.source, V = model.config.vocab_size;
  const at::Tensor input_ids = random_rows(B, S, V, gen);  // [B, S]
  const at::Tensor attention_mask = at::ones({B, S}, at::kLong);

  std::vector<double> batch_ms;
  at::Tensor sequences;
  for (int64_t i = 0; i < o.warmup + o.steps; ++i) {
    const auto t0 = Clock::now();
    const infer::Seq2SeqGeneration result =
        infer::seq2seq_generate(model, input_ids, attention_mask, gen_config);
    const double ms = ms_since(t0);
    if (i >= o.warmup) batch_ms.push_back(ms);
    sequences = result.sequences;
  }

  std::vector<std::vector<int64_t>> rows;
  const at::Tensor seq = sequences.contiguous();
  for (int64_t b = 0; b < seq.size(0); ++b) {
    const at::Tensor row = seq[b];
    rows.emplace_back(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + row.numel());
  }
  const double med_ms = median(batch_ms);
  Json out;
  out["impl"] = "qlora";
  out["mode"] = "beam";
  out["batch"] = B;
  out["source"] = S;
  out["beams"] = o.beams;
  out["new_tokens"] = o.new_tokens;
  out["warmup"] = o.warmup;
  out["steps"] = o.steps;
  out["threads"] = at::get_num_threads();
  out["s_per_batch"] = med_ms / 1000.0;
  out["median_ms"] = med_ms;
  out["batch_ms"] = batch_ms;
  out["ids"] = rows;
  add_memory(out, info);
  out["input_ids_sum"] = input_ids.sum().item<int64_t>();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  BenchOptions o;
  CLI::App app("Times qlora on a T5 model (LoRA training step or beam search); prints one JSON line.");
  app.add_option("--mode", o.mode, "train or beam")->check(CLI::IsMember({"train", "beam"}));
  app.add_option("--model", o.model_dir, "HF folder of a T5ForConditionalGeneration model")->required();
  app.add_option("--batch", o.batch, "B")->check(CLI::PositiveNumber);
  app.add_option("--source", o.source, "S: source tokens per row")->check(CLI::Range(2, 100000));
  app.add_option("--target", o.target, "train: T label tokens per row")->check(CLI::Range(2, 100000));
  app.add_option("--beams", o.beams, "beam: num_beams")->check(CLI::PositiveNumber);
  app.add_option("--new", o.new_tokens, "beam: max_new_tokens")->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "untimed iterations first")->check(CLI::NonNegativeNumber);
  app.add_option("--steps", o.steps, "timed iterations")->check(CLI::PositiveNumber);
  app.add_option("--threads", o.threads, "intra-op threads; 0 = libtorch's default")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", o.seed, "seed of the inputs, the LoRA init and dropout");
  CLI11_PARSE(app, argc, argv);
  try {
    if (o.threads > 0) at::set_num_threads(static_cast<int>(o.threads));
    std::cout << (o.mode == "train" ? run_train(o) : run_beam(o)).dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "bench_seq2seq: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
