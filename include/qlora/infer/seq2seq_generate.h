// Generation for the encoder-decoder (T5) models: greedy search and beam search with the semantics of
// transformers 5.17 generate() (GenerationMixin._sample without sampling, and _beam_search with its
// finished-hypotheses rules, length_penalty, early_stopping True / False / "never"), plus
// no_repeat_ngram_size. The encoder and the cross-attention K/V run once; the decoder runs one token per
// step over a self-attention KV cache whose rows follow the beams.
#pragma once

#include <ATen/core/Tensor.h>

#include "qlora/io/hf_config.h"
#include "qlora/models/t5.h"

namespace qlora::infer {

struct Seq2SeqGeneration {
  // [B, 1 + N]: decoder_start_token_id then the generated tokens, padded as transformers returns them
  // (greedy: pad_token_id after EOS; beam search: pad_token_id, or eos when pad is 0 or unset, as HF's
  // `pad_token_id or eos_token_id[0]` picks it).
  at::Tensor sequences;
  at::Tensor
      sequences_scores;  // beam search: [B] length-penalised log-probability of each output; else undefined
};

// Decodes `input_ids` [B, S] (with `attention_mask` [B, S], undefined = all ones; padded batches welcome)
// with `gen`: num_beams 1 is greedy, more is beam search; do_sample and repetition_penalty other than 1 are
// rejected. Length: max_new_tokens when set, else max_length (counting the decoder start token).
// eos_token_ids empty: runs to the length limit. decoder_start_token_id and pad_token_id default to the
// model config's. Runs without autograd.
Seq2SeqGeneration seq2seq_generate(const models::T5Model& model, const at::Tensor& input_ids,
                                   const at::Tensor& attention_mask, const GenerationConfig& gen);

// NoRepeatNGramLogitsProcessor: for each row of `sequences` [N, L], the tokens that would repeat an
// n-gram already in the row get -inf in `scores` [N, V] (in place). No-op when n == 0 or L + 1 < n.
void ban_repeated_ngrams(const at::Tensor& sequences, at::Tensor& scores, int64_t n);

}  // namespace qlora::infer
