// Generation for the encoder-decoder (T5) models: greedy search and beam search with the semantics of
// transformers 5.17 generate() (GenerationMixin._sample without sampling, and _beam_search with its
// finished-hypotheses rules, length_penalty, early_stopping True / False / "never"), multinomial sampling
// (do_sample with num_beams 1), and the logits processors of the generation config in transformers' order
// (logits_processors.h). The encoder and the cross-attention K/V run once; the decoder runs one token per
// step over a self-attention KV cache whose rows follow the beams.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "qlora/infer/logits_processors.h"
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
  // Seq2SeqOptions::output_scores (greedy and sampling): per step [B, V] float32, the scores after every
  // processor and warper (transformers' `scores` of generate(output_scores=True)).
  std::vector<at::Tensor> scores;
};

struct Seq2SeqOptions {
  uint64_t seed = 0;           // do_sample: a CPU generator seeded with it (as torch.manual_seed(seed))
  bool output_scores = false;  // greedy and sampling only
};

// Decodes `input_ids` [B, S] (with `attention_mask` [B, S], undefined = all ones; padded batches welcome)
// with `gen`: num_beams 1 is greedy (or sampling with do_sample), more is beam search. Refused, naming the
// key: do_sample with num_beams > 1 (beam sampling), encoder_repetition_penalty with num_beams > 1
// (transformers builds that processor from the unexpanded [B, S] ids, so it penalises only the first B
// of the B * num_beams rows), output_scores with beams. Length: max_new_tokens when set, else max_length
// (counting the decoder start token). eos_token_ids empty: runs to the length limit. decoder_start_token_id
// and pad_token_id default to the model config's. Runs without autograd.
Seq2SeqGeneration seq2seq_generate(const models::T5Model& model, const at::Tensor& input_ids,
                                   const at::Tensor& attention_mask, const GenerationConfig& gen,
                                   const Seq2SeqOptions& options = {});

// The processors (and, with do_sample, warpers) a generation config asks for.
LogitsProcessing logits_processing(const GenerationConfig& gen);

}  // namespace qlora::infer
