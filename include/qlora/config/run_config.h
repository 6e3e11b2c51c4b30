// The typed configuration of a training run, filled in one place from YAML < --set overrides.
// Modules receive these structs, never the YAML tree. Units are in each field's comment.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qlora/config/schema.h"

namespace qlora::config {

struct ModelSection {
  std::string path;             // Hugging Face checkpoint folder (config.json + safetensors)
  std::string tokenizer;        // tokenizer folder; empty = model.path
  std::string family = "auto";  // auto (from config.json model_type), xlmr, t5, llama, mpt
  std::string dtype = "fp32";   // compute dtype: auto (by device), fp32, bf16, fp16
  // attention: sdpa (at::scaled_dot_product_attention) or eager (transformers' reference form)
  std::string attn_implementation = "sdpa";
};

struct TaskSection {
  std::string type = "qa";  // qa (extractive), seq2seq, causal_lm
};

struct DataSection {
  std::string train_file;                // prepared JSONL (see docs/DATA_FORMATS.md)
  std::string valid_file;                // prepared JSONL; empty = no evaluation
  int64_t max_seq_length = 384;          // tokens per window / sample
  int64_t doc_stride = 128;              // QA: token overlap between windows of a long context
  bool version_2_with_negative = false;  // QA: unanswerable questions (SQuAD v2, UIT-ViQuAD 2.0)
  int64_t max_samples = -1;              // use only the first N records (-1 = all)
  // causal_lm (SFT): record format and prompt template (see docs/DATA_FORMATS.md).
  std::string format = "auto";             // auto, alpaca, prompt_response, chat
  std::string prompt_template = "alpaca";  // alpaca, phogpt, chatml, llama-2, or a string with {instruction}
  std::string system_prompt;               // chat templates: system message when the record has none
  bool train_on_inputs = false;            // false: loss on response tokens only
  bool add_eos = true;                     // append EOS after each response
  bool packing = false;  // pack samples into max_seq_length rows (attention never crosses them)
  // seq2seq: how a {source, target} pair (qlora prepare pairs) becomes model input and labels.
  std::string source_template = "{source}";  // e.g. "question: {source}"
  std::string target_template = "{target}";  // e.g. "Question sentence: {target}"
  int64_t max_target_length = 128;           // label tokens (incl. EOS)
};

struct AdapterSection {
  std::string type = "lora";  // lora, full (all weights trainable)
  int64_t r = 8;              // LoRA rank
  double alpha = 16;          // lora_alpha; scaling = alpha / r (alpha / sqrt(r) with rslora)
  double dropout = 0.05;      // lora_dropout probability
  // PEFT suffix match or "all-linear"; empty = PEFT's default for the model type (as target_modules=None):
  // query/value for XLM-R and BERT, q/v for T5, q_proj/v_proj for LLaMA-family, Wqkv for MPT.
  std::vector<std::string> target_modules;
  std::string target_regex;   // if set, a PEFT regex string (re.fullmatch) instead of the list
  std::string bias = "none";  // none, all, lora_only
  std::vector<std::string> modules_to_save = {"qa_outputs"};  // fully trained and saved modules
  bool use_rslora = false;                                    // scale by alpha / sqrt(r)
  std::string init = "default";  // default (kaiming-uniform A, zero B) or gaussian
  std::string resume_adapter;    // continue training this PEFT adapter folder
};

// Decoding used by evaluation of generative tasks (and the default of qlora infer for a run).
struct GenerationSection {
  int64_t max_new_tokens = 128;      // tokens generated per sample
  int64_t num_beams = 1;             // 1 = greedy
  double length_penalty = 1.0;       // beam search: exponent on length
  int64_t no_repeat_ngram_size = 0;  // 0 = off
  std::string metric = "auto";  // valid-set text metric: auto (rouge for seq2seq), none, rouge, bleu, chrf
};

struct QuantizationSection {
  bool load_in_4bit = false;                   // QLoRA: NF4/FP4 base weights
  bool load_in_8bit = false;                   // int8 base weights
  std::string quant_type = "nf4";              // nf4, fp4
  bool double_quant = true;                    // quantize the absmax statistics (bnb_4bit_use_double_quant)
  int64_t blocksize = 64;                      // elements per absmax block
  std::string compute_dtype = "bf16";          // fp32, bf16, fp16
  std::vector<std::string> skip_modules = {};  // modules kept unquantized besides the output head
  double int8_threshold = 6.0;                 // LLM.int8 outlier threshold (0 = weight-only int8)
};

struct TrainSection {
  std::string output_dir = "runs/run";      // checkpoints, metrics.jsonl, TensorBoard events
  double epochs = 3;                        // passes over the training set (ignored when max_steps > 0)
  int64_t max_steps = -1;                   // optimizer steps; -1 = from epochs
  int64_t micro_batch_size = 8;             // samples per forward/backward
  int64_t gradient_accumulation_steps = 1;  // micro batches per optimizer step
  double learning_rate = 2e-4;              // peak learning rate
  double weight_decay = 0.0;                // AdamW decoupled decay (not on biases and norms)
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  std::string lr_scheduler = "linear";   // linear, cosine, constant
  int64_t warmup_steps = 0;              // steps of linear warmup (wins over warmup_ratio when > 0)
  double warmup_ratio = 0.0;             // warmup as a fraction of total steps
  double max_grad_norm = 1.0;            // gradient clipping (0 = off)
  int64_t seed = 42;                     // data order, dropout and LoRA init
  int64_t logging_steps = 10;            // log every N optimizer steps
  int64_t eval_steps = 0;                // evaluate every N steps (0 = only at epoch ends)
  int64_t save_steps = 0;                // checkpoint every N steps (0 = only at epoch ends)
  int64_t save_total_limit = 2;          // keep at most N step checkpoints (best is always kept)
  std::string metric_for_best = "loss";  // loss, f1, exact, rougeL, bleu
  int64_t early_stopping_patience = 0;   // stop after N evaluations without improvement (0 = off)
  std::string device = "auto";           // auto, cpu, cuda, cuda:N (ops::resolve_device)
  bool gradient_checkpointing = false;   // recompute block activations in backward
  // causal_lm / seq2seq: labelled tokens per lm_head + cross-entropy chunk, recomputed in backward, so
  // that only chunk x vocab logits exist at once (0 = all labelled tokens at once, no recompute)
  int64_t loss_chunk_tokens = 512;
  std::string optim = "adamw_torch";  // adamw_torch, paged_adamw_32bit, adamw_8bit, paged_adamw_8bit
  std::string mixed_precision =
      "no";  // auto (by device), no, fp16 (dynamic loss scaling), bf16; fp32 masters
};

struct RunConfig {
  ModelSection model;
  TaskSection task;
  DataSection data;
  AdapterSection adapter;
  GenerationSection generation;
  QuantizationSection quantization;
  TrainSection train;
};

// Binds every field of `config` into a schema (the one table of config keys).
Schema bind_schema(RunConfig& config);

// Defaults < YAML file (if path is non-empty) < overrides ("section.key=value"), then validated.
RunConfig load_run_config(const std::string& yaml_path, const std::vector<std::string>& overrides);

// Cross-field checks (ranges, required paths); errors name the key.
void validate(const RunConfig& config);

}  // namespace qlora::config
