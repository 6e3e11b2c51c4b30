// Text generation over any models::CausalLM, as transformers' GenerationMixin.generate does it for
// greedy search and sampling: a prefill of the (left-padded) prompts, then one-token decode steps on the
// KV cache; logits processors in transformers' order (logits_processors.h); finished rows emit the pad id;
// eos ids, max_new_tokens and stop strings end a row.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "qlora/infer/logits_processors.h"
#include "qlora/io/hf_config.h"
#include "qlora/models/causal_lm.h"

namespace qlora::infer {

struct GenerateOptions {
  int64_t max_new_tokens = 20;
  bool do_sample = false;                   // false: greedy (argmax after the repetition penalty)
  double temperature = 1.0;                 // sampling only; must be > 0
  int64_t top_k = 50;                       // sampling only; 0 = off
  double top_p = 1.0;                       // sampling only; 1 = off
  double repetition_penalty = 1.0;          // 1 = off; applied in greedy search too, as transformers does
  double encoder_repetition_penalty = 1.0;  // 1 = off; on the (padded) prompt ids, as HF does
  int64_t no_repeat_ngram_size = 0;         // 0 = off; n-grams of prompt + generated ids
  std::vector<std::vector<int64_t>> bad_words_ids;  // id sequences never generated
  int64_t min_length = 0;                           // eos banned while padded prompt + new < this
  int64_t min_new_tokens = 0;                       // eos banned before this many new tokens
  std::vector<int64_t> suppress_tokens;             // never generated
  std::vector<int64_t> begin_suppress_tokens;       // not generated as the first new token
  std::vector<int64_t> eos_token_ids;  // a row ends after emitting any of them (the eos id is kept)
  int64_t pad_token_id = 0;            // left padding of prompts, and what finished rows emit
  uint64_t seed = 0;                   // sampling randomness: a CPU generator seeded with this
  // A row ends once the decoded text of its generated tokens contains one of these; the text is cut
  // before it. Needs GenerateCallbacks::decode.
  std::vector<std::string> stop_strings;
  bool output_scores = false;  // keep each step's processed scores (GenerateResult::scores)
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
  // With output_scores: per step [B, V] float32, the scores after every processor and warper, which is
  // transformers' `scores` of generate(output_scores=True).
  std::vector<at::Tensor> scores;
};

// Left-pads `prompts` with options.pad_token_id and generates. Empty prompts are an error (a model
// needs at least one token; pass the BOS id).
GenerateResult generate(models::CausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                        const GenerateOptions& options, const GenerateCallbacks& callbacks = {});

// The same on already padded input: input_ids [B, L] int64, attention_mask [B, L] (0 on left pads).
GenerateResult generate(models::CausalLM& model, const at::Tensor& input_ids,
                        const at::Tensor& attention_mask, const GenerateOptions& options,
                        const GenerateCallbacks& callbacks = {});

// The processors of `options` (logits_processors.h); process_logits runs them on the scores [B, V] of the
// first step after the padded prompt input_ids [B, L].
LogitsProcessing logits_processing(const GenerateOptions& options);
at::Tensor process_logits(const at::Tensor& scores, const at::Tensor& input_ids,
                          const GenerateOptions& options);

}  // namespace qlora::infer
