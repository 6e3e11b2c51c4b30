#include "qlora/config/run_config.h"

#include "qlora/core/error.h"

namespace qlora::config {

Schema bind_schema(RunConfig& c) {
  Schema s;
  s.add_string("model.path", &c.model.path, "Hugging Face checkpoint folder (config.json + *.safetensors)");
  s.add_string("model.tokenizer", &c.model.tokenizer, "tokenizer folder; empty means model.path");
  s.add_choice("model.family", &c.model.family, {"auto", "xlmr", "bert", "t5", "llama", "mpt"},
               "architecture; auto reads model_type from config.json");
  s.add_choice("model.dtype", &c.model.dtype, {"auto", "fp32", "bf16", "fp16"},
               "compute dtype; auto: fp32 on the CPU, bf16 on GPUs with sm80+, fp16 below (T4, V100)");
  s.add_choice("model.attn_implementation", &c.model.attn_implementation, {"sdpa", "eager"},
               "attention: sdpa (fused kernels; eager under attention dropout) or eager (transformers' "
               "reference form, the parity fixtures')");

  s.add_choice("task.type", &c.task.type, {"qa", "seq2seq", "causal_lm"}, "what the model is trained to do");

  s.add_string("data.train_file", &c.data.train_file, "prepared training JSONL");
  s.add_string("data.valid_file", &c.data.valid_file, "prepared validation JSONL (empty: no evaluation)");
  s.add_int("data.max_seq_length", &c.data.max_seq_length, "tokens per window or sample");
  s.add_int("data.doc_stride", &c.data.doc_stride, "QA: token overlap between windows of a long context");
  s.add_bool("data.version_2_with_negative", &c.data.version_2_with_negative,
             "QA: the data has unanswerable questions (SQuAD v2, UIT-ViQuAD 2.0)");
  s.add_int("data.max_samples", &c.data.max_samples, "use only the first N records (-1: all)");
  s.add_choice("data.format", &c.data.format, {"auto", "alpaca", "prompt_response", "chat"},
               "causal_lm: record format (auto: from the first record's keys)");
  s.add_string("data.prompt_template", &c.data.prompt_template,
               "causal_lm: alpaca, phogpt, chatml, llama-2, or a string with {instruction} and {input}");
  s.add_string("data.system_prompt", &c.data.system_prompt,
               "causal_lm chat templates: default system message");
  s.add_bool("data.train_on_inputs", &c.data.train_on_inputs,
             "causal_lm: also compute the loss on prompt tokens");
  s.add_bool("data.add_eos", &c.data.add_eos, "causal_lm: append EOS after each response");
  s.add_bool("data.packing", &c.data.packing,
             "causal_lm: pack samples into max_seq_length rows (no attention across samples)");
  s.add_string("data.source_template", &c.data.source_template, "seq2seq: model input, {source} is replaced");
  s.add_string("data.target_template", &c.data.target_template, "seq2seq: labels, {target} is replaced");
  s.add_int("data.max_target_length", &c.data.max_target_length, "seq2seq: label tokens (incl. EOS)");

  s.add_int("generation.max_new_tokens", &c.generation.max_new_tokens, "tokens generated per sample in eval");
  s.add_int("generation.num_beams", &c.generation.num_beams, "beam search width (1: greedy)");
  s.add_float("generation.length_penalty", &c.generation.length_penalty, "beam search length exponent");
  s.add_int("generation.no_repeat_ngram_size", &c.generation.no_repeat_ngram_size,
            "forbid repeating n-grams of this size (0: off)");
  s.add_choice("generation.metric", &c.generation.metric, {"auto", "none", "rouge", "bleu", "chrf"},
               "text metric computed on the valid set (auto: rouge for seq2seq, none otherwise)");

  s.add_choice("adapter.type", &c.adapter.type, {"lora", "full"}, "lora, or full fine-tuning");
  s.add_int("adapter.r", &c.adapter.r, "LoRA rank");
  s.add_float("adapter.alpha", &c.adapter.alpha, "lora_alpha; scaling = alpha / r");
  s.add_float("adapter.dropout", &c.adapter.dropout, "lora_dropout probability");
  s.add_list(
      "adapter.target_modules", &c.adapter.target_modules,
      "module names matched by suffix as PEFT does, all-linear, or [] for PEFT's default of the model type");
  s.add_string("adapter.target_regex", &c.adapter.target_regex,
               "PEFT regex string (full match) used instead of target_modules");
  s.add_choice("adapter.bias", &c.adapter.bias, {"none", "all", "lora_only"}, "which biases train");
  s.add_list("adapter.modules_to_save", &c.adapter.modules_to_save, "modules trained in full and saved");
  s.add_bool("adapter.use_rslora", &c.adapter.use_rslora, "scale by alpha / sqrt(r)");
  s.add_choice("adapter.init", &c.adapter.init, {"default", "gaussian"}, "LoRA initialisation");
  s.add_string("adapter.resume_adapter", &c.adapter.resume_adapter, "continue training this adapter folder");

  s.add_bool("quantization.load_in_4bit", &c.quantization.load_in_4bit, "4-bit (QLoRA) base weights");
  s.add_bool("quantization.load_in_8bit", &c.quantization.load_in_8bit, "8-bit base weights");
  s.add_choice("quantization.quant_type", &c.quantization.quant_type, {"nf4", "fp4"}, "4-bit data type");
  s.add_bool("quantization.double_quant", &c.quantization.double_quant, "quantize the absmax statistics");
  s.add_int("quantization.blocksize", &c.quantization.blocksize, "elements per absmax block");
  s.add_choice("quantization.compute_dtype", &c.quantization.compute_dtype, {"fp32", "bf16", "fp16"},
               "dtype of the dequantized matmul");
  s.add_list("quantization.skip_modules", &c.quantization.skip_modules,
             "modules kept unquantized besides the output head (llm_int8_skip_modules)");
  s.add_float("quantization.int8_threshold", &c.quantization.int8_threshold,
              "LLM.int8 outlier threshold (0: weight-only int8)");

  s.add_string("train.output_dir", &c.train.output_dir, "run folder: checkpoints, metrics.jsonl, events");
  s.add_float("train.epochs", &c.train.epochs, "passes over the training set");
  s.add_int("train.max_steps", &c.train.max_steps, "optimizer steps (-1: from epochs)");
  s.add_int("train.micro_batch_size", &c.train.micro_batch_size, "samples per forward/backward");
  s.add_int("train.gradient_accumulation_steps", &c.train.gradient_accumulation_steps,
            "micro batches per optimizer step");
  s.add_float("train.learning_rate", &c.train.learning_rate, "peak learning rate");
  s.add_float("train.weight_decay", &c.train.weight_decay, "AdamW decoupled weight decay");
  s.add_float("train.adam_beta1", &c.train.adam_beta1, "AdamW beta1");
  s.add_float("train.adam_beta2", &c.train.adam_beta2, "AdamW beta2");
  s.add_float("train.adam_epsilon", &c.train.adam_epsilon, "AdamW epsilon");
  s.add_choice("train.lr_scheduler", &c.train.lr_scheduler, {"linear", "cosine", "constant"},
               "learning-rate schedule after warmup");
  s.add_int("train.warmup_steps", &c.train.warmup_steps, "linear warmup steps (wins over warmup_ratio)");
  s.add_float("train.warmup_ratio", &c.train.warmup_ratio, "warmup as a fraction of all steps");
  s.add_float("train.max_grad_norm", &c.train.max_grad_norm, "gradient clipping norm (0: off)");
  s.add_int("train.seed", &c.train.seed, "seed for data order, dropout and LoRA init");
  s.add_int("train.logging_steps", &c.train.logging_steps, "log every N optimizer steps");
  s.add_int("train.eval_steps", &c.train.eval_steps, "evaluate every N steps (0: at epoch ends)");
  s.add_int("train.save_steps", &c.train.save_steps, "checkpoint every N steps (0: at epoch ends)");
  s.add_int("train.save_total_limit", &c.train.save_total_limit, "step checkpoints kept (best always kept)");
  s.add_choice("train.metric_for_best", &c.train.metric_for_best,
               {"loss", "f1", "exact", "rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf"},
               "metric that picks the best checkpoint");
  s.add_int("train.early_stopping_patience", &c.train.early_stopping_patience,
            "stop after N evaluations without improvement (0: off)");
  s.add_string(
      "train.device", &c.train.device,
      "where to train: auto (the first GPU when this build has CUDA and one is present, else the CPU), "
      "cpu, cuda or cuda:N");
  s.add_bool("train.gradient_checkpointing", &c.train.gradient_checkpointing,
             "recompute each block's activations in backward to save memory");
  s.add_int("train.loss_chunk_tokens", &c.train.loss_chunk_tokens,
            "causal_lm / seq2seq: labelled tokens per lm_head + cross-entropy chunk, recomputed in "
            "backward so only chunk x vocab logits exist at once (0: no chunking)");
  s.add_choice("train.optim", &c.train.optim,
               {"adamw_torch", "paged_adamw_32bit", "adamw_8bit", "paged_adamw_8bit"},
               "optimizer: AdamW, paged (CPU-offloadable) states, 8-bit states");
  s.add_choice("train.mixed_precision", &c.train.mixed_precision, {"auto", "no", "fp16", "bf16"},
               "autocast dtype with fp32 master weights (fp16 uses dynamic loss scaling); auto: bf16 on GPUs "
               "with sm80+, fp16 below (T4, V100), no on the CPU");
  return s;
}

namespace {

void require(bool ok, const std::string& key, const std::string& message) {
  if (!ok) fail("config key '" + key + "': " + message);
}

}  // namespace

void validate(const RunConfig& c) {
  require(c.data.max_seq_length > 0, "data.max_seq_length", "must be positive");
  require(c.task.type != "qa" || (c.data.doc_stride >= 0 && c.data.doc_stride < c.data.max_seq_length),
          "data.doc_stride", "must be in [0, max_seq_length)");
  require(c.adapter.r > 0, "adapter.r", "must be positive");
  require(c.adapter.alpha > 0, "adapter.alpha", "must be positive");
  require(c.adapter.dropout >= 0 && c.adapter.dropout < 1, "adapter.dropout", "must be in [0, 1)");
  require(!(c.quantization.load_in_4bit && c.quantization.load_in_8bit), "quantization.load_in_4bit",
          "cannot be combined with load_in_8bit");
  const int64_t bs = c.quantization.blocksize;
  require(bs >= 32 && bs <= 4096 && (bs & (bs - 1)) == 0, "quantization.blocksize",
          "must be a power of two in [32, 4096]");
  require(c.train.epochs > 0 || c.train.max_steps > 0, "train.epochs",
          "must be positive unless max_steps is set");
  require(c.train.micro_batch_size > 0, "train.micro_batch_size", "must be positive");
  require(c.train.gradient_accumulation_steps > 0, "train.gradient_accumulation_steps", "must be positive");
  require(c.train.learning_rate > 0, "train.learning_rate", "must be positive");
  require(c.train.warmup_ratio >= 0 && c.train.warmup_ratio < 1, "train.warmup_ratio", "must be in [0, 1)");
  require(c.train.warmup_steps >= 0, "train.warmup_steps", "must be non-negative");
  require(c.train.max_grad_norm >= 0, "train.max_grad_norm", "must be non-negative");
  require(c.train.adam_beta1 >= 0 && c.train.adam_beta1 < 1, "train.adam_beta1", "must be in [0, 1)");
  require(c.train.adam_beta2 >= 0 && c.train.adam_beta2 < 1, "train.adam_beta2", "must be in [0, 1)");
  require(c.train.logging_steps > 0, "train.logging_steps", "must be positive");
  require(c.train.loss_chunk_tokens >= 0, "train.loss_chunk_tokens", "must be non-negative (0: no chunking)");
  require(c.data.max_target_length > 0, "data.max_target_length", "must be positive");
  require(c.generation.max_new_tokens > 0, "generation.max_new_tokens", "must be positive");
  require(c.generation.num_beams >= 1, "generation.num_beams", "must be at least 1");
  require(c.generation.no_repeat_ngram_size >= 0, "generation.no_repeat_ngram_size", "must be non-negative");
  require(c.quantization.int8_threshold >= 0, "quantization.int8_threshold", "must be non-negative");
  require(c.train.save_total_limit >= 1, "train.save_total_limit", "must be at least 1");
}

RunConfig load_run_config(const std::string& yaml_path, const std::vector<std::string>& overrides) {
  RunConfig config;
  const Schema schema = bind_schema(config);
  if (!yaml_path.empty()) schema.apply_yaml_file(yaml_path);
  for (const auto& o : overrides) schema.apply_override(o);
  validate(config);
  return config;
}

}  // namespace qlora::config
