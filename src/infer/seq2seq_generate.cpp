// Greedy and beam search for T5, transcribing transformers 5.17 generation/utils.py (_sample with
// do_sample=False; _beam_search and its helpers _get_top_k_continuations,
// _get_running_beams_for_next_iteration, _update_finished_beams, _check_early_stop_heuristic,
// _beam_search_has_unfinished_sequences) with the same tensor operations, so that ties and the -1e9
// bookkeeping resolve the same way.
#include "qlora/infer/seq2seq_generate.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "qlora/core/error.h"

namespace qlora::infer {
namespace {

using EarlyStopping = GenerationConfig::EarlyStopping;

// The decoder side of one generation: cross K/V and encoder mask per row, the growing self-attention cache.
struct DecoderState {
  const models::T5Model& model;
  models::T5CrossKV cross;
  at::Tensor encoder_mask;  // [N, S]
  models::T5KVCache cache;

  // float32 logits [N, V] of the next token after `last` [N, 1].
  at::Tensor next_logits(const at::Tensor& last) {
    const at::Tensor logits = models::decode_step(model, last, cache, cross, encoder_mask, {});
    return logits.select(1, logits.size(1) - 1).to(at::kFloat);
  }
};

// take_along_dim over dim 1, indices broadcast over trailing dims (GenerationMixin._gather_beams).
at::Tensor gather_beams(const at::Tensor& t, at::Tensor idx) {
  while (idx.dim() < t.dim()) idx = idx.unsqueeze(-1);
  return at::take_along_dim(t, idx, 1);
}

// StoppingCriteriaList of generate(): MaxLengthCriteria and EosTokenCriteria, on sequences [N, L].
at::Tensor hits_stop(const at::Tensor& sequences, int64_t max_length, const at::Tensor& eos) {
  const int64_t N = sequences.size(0), L = sequences.size(1);
  at::Tensor done = at::full({N}, L >= max_length, at::TensorOptions().dtype(at::kBool));
  if (eos.numel() > 0) done = done | at::isin(sequences.select(1, L - 1), eos);
  return done;
}

// _sample: greedy (argmax) or multinomial sampling on the processed scores.
Seq2SeqGeneration greedy(DecoderState& state, int64_t B, int64_t start, int64_t pad, const at::Tensor& eos,
                         int64_t max_length, const at::Tensor& encoder_ids,
                         const LogitsProcessing& processing, const Seq2SeqOptions& options) {
  const at::TensorOptions longs = at::TensorOptions().dtype(at::kLong);
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  Seq2SeqGeneration out;
  at::Tensor sequences = at::full({B, 1}, start, longs);
  at::Tensor unfinished = at::ones({B}, longs);
  while (true) {
    const at::Tensor logits = state.next_logits(sequences.narrow(1, sequences.size(1) - 1, 1));  // [B, V]
    const at::Tensor scores = process_logits(logits, sequences, 1, encoder_ids, processing);
    if (options.output_scores) out.scores.push_back(scores);
    at::Tensor next =
        processing.do_sample
            ? at::multinomial(at::softmax(scores, -1), 1, /*replacement=*/false, generator).squeeze(1)
            : scores.argmax(-1);
    if (eos.numel() > 0) next = next * unfinished + pad * (1 - unfinished);
    sequences = at::cat({sequences, next.unsqueeze(1)}, 1);
    unfinished = unfinished & (~hits_stop(sequences, max_length, eos)).to(at::kLong);
    if (unfinished.max().item<int64_t>() == 0) break;
  }
  out.sequences = sequences;
  return out;
}

Seq2SeqGeneration beam_search(DecoderState& state, int64_t B, int64_t K, int64_t start, int64_t fill,
                              const at::Tensor& eos, int64_t max_length, const GenerationConfig& gen,
                              const LogitsProcessing& processing) {
  const at::TensorOptions longs = at::TensorOptions().dtype(at::kLong);
  const at::TensorOptions floats = at::TensorOptions().dtype(at::kFloat);
  const at::TensorOptions bools = at::TensorOptions().dtype(at::kBool);
  const int64_t V = state.model.config.vocab_size;
  const int64_t prompt_len = 1;  // the decoder start token
  const double lp = gen.length_penalty;
  const EarlyStopping early = gen.early_stopping;
  // Keep (#eos + 1) * K candidates so that K unfinished ones remain when the top K all end in EOS.
  const int64_t beams_to_keep = std::max<int64_t>(2, 1 + eos.numel()) * K;
  const at::Tensor top_num_beam_mask =
      at::cat({at::ones({K}, bools), at::zeros({beams_to_keep - K}, bools)});  // [2K]

  at::Tensor running_sequences = at::full({B, K, max_length}, fill, longs);
  running_sequences.select(2, 0).fill_(start);
  at::Tensor sequences = running_sequences.clone();
  // Only beam 0 is live at first, so the K beams do not all pick the same tokens.
  at::Tensor running_beam_scores = at::zeros({B, K}, floats);
  running_beam_scores.narrow(1, 1, K - 1).fill_(-1e9);
  at::Tensor beam_scores = at::full({B, K}, -1e9, floats);
  at::Tensor is_sent_finished = at::zeros({B, K}, bools);
  at::Tensor heuristic_unsatisfied = at::ones({B, 1}, bools);
  at::Tensor running_beam_indices =
      at::full({B, K, max_length - prompt_len}, -1, at::TensorOptions().dtype(at::kInt));
  at::Tensor beam_indices = running_beam_indices.clone();
  const at::Tensor batch_offset = (at::arange(B, longs) * K).view({-1, 1});

  int64_t cur_len = prompt_len;
  while (true) {
    const at::Tensor flat = running_sequences.narrow(2, 0, cur_len).reshape({B * K, cur_len});
    at::Tensor log_probs =
        process_logits(at::log_softmax(state.next_logits(flat.narrow(1, cur_len - 1, 1)), -1), flat,
                       prompt_len, {}, processing);  // [B*K, V]
    log_probs = (log_probs.view({B, K, V}) + running_beam_scores.unsqueeze(2)).reshape({B, K * V});

    // c. top-K continuations over all beams of an input.
    auto [topk_log_probs, topk_indices] = at::topk(log_probs, beams_to_keep);
    const at::Tensor topk_beam = at::floor_divide(topk_indices, V);
    at::Tensor topk_running_beam_indices = gather_beams(running_beam_indices, topk_beam);
    at::Tensor topk_running_sequences = gather_beams(running_sequences, topk_beam);
    topk_running_sequences.select(2, cur_len).copy_(at::remainder(topk_indices, V));
    topk_running_beam_indices.select(2, cur_len - prompt_len).copy_(topk_beam + batch_offset);

    // d. which candidates are finished.
    const at::Tensor hits =
        hits_stop(topk_running_sequences.narrow(2, 0, cur_len + 1).reshape({B * beams_to_keep, cur_len + 1}),
                  max_length, eos)
            .view({B, beams_to_keep});

    // e. the best K unfinished candidates run on.
    const at::Tensor topk_running_log_probs = topk_log_probs + hits.to(at::kFloat) * -1.0e9;
    const at::Tensor next_topk = std::get<1>(at::topk(topk_running_log_probs, K));
    running_sequences = gather_beams(topk_running_sequences, next_topk);
    running_beam_scores = gather_beams(topk_running_log_probs, next_topk);
    running_beam_indices = gather_beams(topk_running_beam_indices, next_topk);

    // f. finished candidates among the top K enter the finished set if they beat its members.
    const at::Tensor just_finished = hits & top_num_beam_mask.unsqueeze(0);
    at::Tensor finished_scores = topk_log_probs / std::pow(static_cast<double>(cur_len + 1 - prompt_len), lp);
    const at::Tensor full = at::all(is_sent_finished, -1, /*keepdim=*/true) & (early == EarlyStopping::kTrue);
    finished_scores = finished_scores + full.to(at::kFloat) * -1.0e9;
    finished_scores = finished_scores + (~heuristic_unsatisfied).to(at::kFloat) * -1.0e9;
    finished_scores = finished_scores + (~just_finished).to(at::kFloat) * -1.0e9;
    const at::Tensor merged_sequences = at::cat({sequences, topk_running_sequences}, 1);
    const at::Tensor merged_scores = at::cat({beam_scores, finished_scores}, 1);
    const at::Tensor merged_indices = at::cat({beam_indices, topk_running_beam_indices}, 1);
    const at::Tensor merged_finished = at::cat({is_sent_finished, just_finished}, 1);
    const at::Tensor keep = std::get<1>(at::topk(merged_scores, K));
    sequences = gather_beams(merged_sequences, keep);
    beam_scores = gather_beams(merged_scores, keep);
    beam_indices = gather_beams(merged_indices, keep);
    is_sent_finished = gather_beams(merged_finished, keep);

    // g. the cache rows follow the running beams; then the stop rules.
    state.cache.reorder(running_beam_indices.select(2, cur_len - prompt_len).reshape({B * K}).to(at::kLong));
    cur_len += 1;
    const double best_len = (early == EarlyStopping::kNever && lp > 0.0)
                                ? static_cast<double>(max_length - prompt_len)
                                : static_cast<double>(cur_len - prompt_len);
    const at::Tensor best_possible = running_beam_scores.narrow(1, 0, 1) / std::pow(best_len, lp);
    const at::Tensor worst_finished =
        at::where(is_sent_finished, std::get<0>(at::min(beam_scores, 1, /*keepdim=*/true)),
                  at::scalar_tensor(-1.0e9, floats));
    heuristic_unsatisfied =
        heuristic_unsatisfied & at::any(best_possible > worst_finished, -1, /*keepdim=*/true);
    const bool improvement_possible = heuristic_unsatisfied.any().item<bool>();
    const bool open_beam = !(is_sent_finished.all().item<bool>() && early == EarlyStopping::kTrue);
    const bool valid_continuations = !hits.all().item<bool>();
    if (!(improvement_possible && open_beam && valid_continuations)) break;
  }

  // The best finished hypothesis of each input, cropped to the longest generated length.
  at::Tensor out_indices = beam_indices.select(1, 0);  // [B, max_length - 1]
  const int64_t generated = (out_indices + 1).to(at::kBool).sum(1).max().item<int64_t>();
  Seq2SeqGeneration out;
  out.sequences = sequences.select(1, 0).narrow(1, 0, prompt_len + generated).contiguous();
  out.sequences_scores = beam_scores.select(1, 0).contiguous();
  return out;
}

}  // namespace

LogitsProcessing logits_processing(const GenerationConfig& g) { return logits_processing_of(g); }

Seq2SeqGeneration seq2seq_generate(const models::T5Model& model, const at::Tensor& input_ids,
                                   const at::Tensor& attention_mask, const GenerationConfig& gen,
                                   const Seq2SeqOptions& options) {
  if (gen.num_beams < 1)
    fail("seq2seq_generate: num_beams must be >= 1, got " + std::to_string(gen.num_beams));
  if (gen.num_beams > 1 && gen.do_sample)
    fail("seq2seq_generate: do_sample with num_beams > 1 (beam sampling) is not supported");
  if (gen.num_beams > 1 && gen.encoder_repetition_penalty != 1.0) {
    fail(
        "seq2seq_generate: encoder_repetition_penalty with num_beams > 1 is not supported (transformers "
        "applies it to the first batch_size of the batch_size * num_beams rows only)");
  }
  if (gen.num_beams > 1 && options.output_scores)
    fail("seq2seq_generate: output scores are for greedy search and sampling (num_beams 1)");
  if (gen.do_sample && gen.temperature <= 0)
    fail("seq2seq_generate: temperature must be > 0 when sampling, got " + std::to_string(gen.temperature));
  if (!input_ids.defined() || input_ids.dim() != 2) fail("seq2seq_generate: input_ids must be [B, S]");
  at::NoGradGuard no_grad;
  const models::T5Config& c = model.config;
  const int64_t B = input_ids.size(0), K = gen.num_beams;
  const int64_t start = gen.decoder_start_token_id.value_or(c.decoder_start_token_id);
  const std::optional<int64_t> pad =
      gen.pad_token_id ? gen.pad_token_id : std::optional<int64_t>(c.pad_token_id);
  const at::Tensor eos = at::tensor(gen.eos_token_ids, at::TensorOptions().dtype(at::kLong));
  const int64_t max_length = gen.max_new_tokens ? 1 + *gen.max_new_tokens : gen.max_length;
  if (max_length < 2)
    fail("seq2seq_generate: nothing to generate (max length " + std::to_string(max_length) + ")");

  const at::Tensor mask = attention_mask.defined() ? attention_mask : at::ones_like(input_ids);
  const at::Tensor hidden = models::encode(model, input_ids, mask, {});  // [B, S, C]
  // Each input's K beams are K consecutive rows (HF _expand_inputs_for_generation: repeat_interleave).
  const at::Tensor rows = at::arange(B, at::TensorOptions().dtype(at::kLong)).repeat_interleave(K);
  DecoderState state{
      model, models::precompute_cross_kv(model, hidden, {}).index_rows(rows), mask.index_select(0, rows), {}};
  const LogitsProcessing processing = logits_processing(gen);
  if (K == 1) {
    return greedy(state, B, start, pad.value_or(0), eos, max_length, input_ids.to(at::kLong), processing,
                  options);
  }
  // HF: `pad_token_id or eos_token_id[0]`: a pad id of 0 is falsy and gives way to EOS.
  const int64_t fill = eos.numel() == 0 ? -1 : (pad && *pad != 0 ? *pad : gen.eos_token_ids.front());
  return beam_search(state, B, K, start, fill, eos, max_length, gen, processing);
}

}  // namespace qlora::infer
