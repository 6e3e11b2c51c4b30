// Text generation over any models::CausalLM, as transformers' GenerationMixin.generate does it for
// greedy search and sampling: a prefill of the (left-padded) prompts, then one-token decode steps on the
// KV cache; logits processors in transformers' order (repetition penalty, then temperature, top-k, top-p
// when sampling); finished rows emit the pad id; eos ids, max_new_tokens and stop strings end a row.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "qlora/io/hf_config.h"
#include "qlora/models/causal_lm.h"

namespace qlora::infer {

struct GenerateOptions {
  int64_t max_new_tokens = 20;
  bool do_sample = false;              // false: greedy (argmax after the repetition penalty)
  double temperature = 1.0;            // sampling only; must be > 0
  int64_t top_k = 50;                  // sampling only; 0 = off
  double top_p = 1.0;                  // sampling only; 1 = off
  double repetition_penalty = 1.0;     // 1 = off; applied in greedy search too, as transformers does
  std::vector<int64_t> eos_token_ids;  // a row ends after emitting any of them (the eos id is kept)
  int64_t pad_token_id = 0;            // left padding of prompts, and what finished rows emit
  uint64_t seed = 0;                   // sampling randomness: a CPU generator seeded with this
  // A row ends once the decoded text of its generated tokens contains one of these; the text is cut
  // before it. Needs GenerateCallbacks::decode.
  std::vector<std::string> stop_strings;
};

// Decoding defaults of a model: generation_config.json (transformers' defaults for unset fields).
// max_new_tokens comes from max_new_tokens, else max_length - prompt_length (at least 0); pad falls back
// to the first eos id, then 0, as transformers does when pad_token_id is unset.
GenerateOptions generate_options_from(const GenerationConfig& config, int64_t prompt_length);

struct GenerateCallbacks {
  // Generated ids of one row -> text (the tokenizer's decode, skipping special tokens): stop strings.
  std::function<std::string(const std::vector<int64_t>&)> decode;
  // Called with (row, token) for each token a row emits while it is unfinished (streaming).
  std::function<void(int64_t, int64_t)> on_token;
};

struct GeneratedRow {
  std::vector<int64_t> ids;   // generated ids, up to and including the eos id / the stop-string token
  std::string text;           // decode(ids), cut before a stop string (empty without a decode callback)
  std::string finish_reason;  // "eos", "stop" or "length"
};

struct GenerateResult {
  std::vector<GeneratedRow> rows;
  // [B, N] every step's token, pad after a row finished: transformers' output without the prompt.
  at::Tensor tokens;
  int64_t steps = 0;  // decode steps run (N)
};

// Left-pads `prompts` with options.pad_token_id and generates. Empty prompts are an error (a model
// needs at least one token; pass the BOS id).
GenerateResult generate(models::CausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                        const GenerateOptions& options, const GenerateCallbacks& callbacks = {});

// The same on already padded input: input_ids [B, L] int64, attention_mask [B, L] (0 on left pads).
GenerateResult generate(models::CausalLM& model, const at::Tensor& input_ids,
                        const at::Tensor& attention_mask, const GenerateOptions& options,
                        const GenerateCallbacks& callbacks = {});

// transformers' logits processors on scores [B, V] float32 (each returns a new tensor).
// RepetitionPenaltyLogitsProcessor: scores of every id in input_ids [B, L] (pads included) are divided by
// `penalty` when positive, multiplied when negative.
at::Tensor repetition_penalty(const at::Tensor& scores, const at::Tensor& input_ids, double penalty);
// TemperatureLogitsWarper: scores / temperature.
at::Tensor temperature_warp(const at::Tensor& scores, double temperature);
// TopKLogitsWarper: scores below the k-th largest become -inf (ties with it are kept).
at::Tensor top_k_filter(const at::Tensor& scores, int64_t top_k, int64_t min_tokens_to_keep = 1);
// TopPLogitsWarper: drops the smallest-probability tokens whose cumulative probability (ascending) is
// <= 1 - top_p, keeping at least min_tokens_to_keep.
at::Tensor top_p_filter(const at::Tensor& scores, double top_p, int64_t min_tokens_to_keep = 1);
// The chain generate applies: repetition penalty (when != 1), then when sampling temperature (!= 1),
// top-k (!= 0), top-p (< 1).
at::Tensor process_logits(const at::Tensor& scores, const at::Tensor& input_ids,
                          const GenerateOptions& options);

}  // namespace qlora::infer
