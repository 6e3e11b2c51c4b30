// transformers 5.17's logits processors (generation/logits_process.py) on scores [N, V] float32, and the
// chain GenerationMixin._get_logits_processor builds from a generation config, in its order. Shared by
// decoder generation (generate.h) and T5 generation (seq2seq_generate.h). Each function returns a new
// tensor unless it says "in place".
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace qlora::infer {

// The processors and warpers of one generate() call; each is off at its default.
struct LogitsProcessing {
  double encoder_repetition_penalty = 1.0;          // 1 = off; penalises ids of the encoder input / prompt
  double repetition_penalty = 1.0;                  // 1 = off
  int64_t no_repeat_ngram_size = 0;                 // 0 = off
  std::vector<std::vector<int64_t>> bad_words_ids;  // id sequences never generated
  int64_t min_length = 0;                           // eos banned while the sequence is shorter (0 = off)
  int64_t min_new_tokens = 0;                       // eos banned before this many new tokens (0 = off)
  std::vector<int64_t> suppress_tokens;             // always -inf
  std::vector<int64_t> begin_suppress_tokens;       // -inf at the first generated position
  std::vector<int64_t> eos_token_ids;               // for min_length / min_new_tokens / bad words
  bool do_sample = false;                           // the warpers below run only when sampling
  double temperature = 1.0;
  int64_t top_k = 0;               // 0 = off
  double top_p = 1.0;              // 1 = off
  int64_t min_tokens_to_keep = 1;  // top-k / top-p: #eos + 1 under beam sampling
};

// The processing fields of any settings struct that uses transformers' field names (GenerateOptions,
// GenerationConfig): one place to copy them, so a new processor cannot be wired for one family only.
template <typename Settings>
LogitsProcessing logits_processing_of(const Settings& s) {
  LogitsProcessing p;
  p.encoder_repetition_penalty = s.encoder_repetition_penalty;
  p.repetition_penalty = s.repetition_penalty;
  p.no_repeat_ngram_size = s.no_repeat_ngram_size;
  p.bad_words_ids = s.bad_words_ids;
  p.min_length = s.min_length;
  p.min_new_tokens = s.min_new_tokens;
  p.suppress_tokens = s.suppress_tokens;
  p.begin_suppress_tokens = s.begin_suppress_tokens;
  p.eos_token_ids = s.eos_token_ids;
  p.do_sample = s.do_sample;
  p.temperature = s.temperature;
  p.top_k = s.top_k;
  p.top_p = s.top_p;
  return p;
}

// RepetitionPenaltyLogitsProcessor: scores of every id in input_ids [N, L] (pads included) are divided by
// `penalty` when positive, multiplied when negative.
at::Tensor repetition_penalty(const at::Tensor& scores, const at::Tensor& input_ids, double penalty);
// EncoderRepetitionPenaltyLogitsProcessor: the same with 1 / penalty over encoder_ids [N, S] (it raises
// the scores of ids in the input when penalty > 1).
at::Tensor encoder_repetition_penalty(const at::Tensor& scores, const at::Tensor& encoder_ids,
                                      double penalty);
// NoRepeatNGramLogitsProcessor: for each row of `sequences` [N, L], the tokens that would repeat an
// n-gram already in the row get -inf in `scores` [N, V] (in place). No-op when n == 0 or L + 1 < n.
void ban_repeated_ngrams(const at::Tensor& sequences, at::Tensor& scores, int64_t n);
// NoBadWordsLogitsProcessor: single-id bad words are always -inf; a longer one bans its last id where the
// row of input_ids [N, L] ends with its prefix (and L >= its length). Bad words equal to [eos] are dropped.
at::Tensor ban_bad_words(const at::Tensor& scores, const at::Tensor& input_ids,
                         const std::vector<std::vector<int64_t>>& bad_words_ids,
                         const std::vector<int64_t>& eos_token_ids);
// SuppressTokensLogitsProcessor: the ids get -inf.
at::Tensor suppress_tokens(const at::Tensor& scores, const std::vector<int64_t>& ids);
// TemperatureLogitsWarper: scores / temperature.
at::Tensor temperature_warp(const at::Tensor& scores, double temperature);
// TopKLogitsWarper: scores below the k-th largest become -inf (ties with it are kept).
at::Tensor top_k_filter(const at::Tensor& scores, int64_t top_k, int64_t min_tokens_to_keep = 1);
// TopPLogitsWarper: drops the smallest-probability tokens whose cumulative probability (ascending) is
// <= 1 - top_p, keeping at least min_tokens_to_keep.
at::Tensor top_p_filter(const at::Tensor& scores, double top_p, int64_t min_tokens_to_keep = 1);

// The chain, in _get_logits_processor's order: encoder repetition penalty, repetition penalty, no-repeat
// n-grams, bad words, min length, min new tokens, suppress tokens, begin-suppress tokens; then, sampling,
// temperature, top-k, top-p. `input_ids` [N, L] is every token so far (the decoder's, start token included
// for T5); `input_length` is generate()'s input_ids_seq_length (the padded prompt length; 1 for T5);
// `encoder_ids` [N, S] the encoder input (T5) or the prompt (decoders), used only by the encoder
// repetition penalty.
at::Tensor process_logits(const at::Tensor& scores, const at::Tensor& input_ids, int64_t input_length,
                          const at::Tensor& encoder_ids, const LogitsProcessing& p);

}  // namespace qlora::infer
