// Greedy search and sampling over models::CausalLM (transformers generation/utils.py _sample and
// generation/logits_process.py), with a KV cache: one prefill, then one token per step.
#include "qlora/infer/generate.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <limits>

#include "qlora/core/error.h"

namespace qlora::infer {

LogitsProcessing logits_processing(const GenerateOptions& o) { return logits_processing_of(o); }

at::Tensor process_logits(const at::Tensor& scores, const at::Tensor& input_ids, const GenerateOptions& o) {
  return process_logits(scores, input_ids, input_ids.size(1), input_ids, logits_processing(o));
}

GenerateOptions generate_options_from(const GenerationConfig& g, int64_t prompt_length) {
  GenerateOptions o;
  o.max_new_tokens =
      g.max_new_tokens ? *g.max_new_tokens : std::max<int64_t>(0, g.max_length - prompt_length);
  o.do_sample = g.do_sample;
  o.temperature = g.temperature;
  o.top_k = g.top_k;
  o.top_p = g.top_p;
  o.repetition_penalty = g.repetition_penalty;
  o.encoder_repetition_penalty = g.encoder_repetition_penalty;
  o.no_repeat_ngram_size = g.no_repeat_ngram_size;
  o.bad_words_ids = g.bad_words_ids;
  o.min_length = g.min_length;
  o.min_new_tokens = g.min_new_tokens;
  o.suppress_tokens = g.suppress_tokens;
  o.begin_suppress_tokens = g.begin_suppress_tokens;
  o.eos_token_ids = g.eos_token_ids;
  o.pad_token_id = g.pad_token_id ? *g.pad_token_id : !g.eos_token_ids.empty() ? g.eos_token_ids.front() : 0;
  return o;
}

GenerateResult generate(models::CausalLM& model, const std::vector<std::vector<int64_t>>& prompts,
                        const GenerateOptions& options, const GenerateCallbacks& callbacks) {
  if (prompts.empty()) fail("generate: no prompts");
  size_t L = 0;
  for (const auto& p : prompts) {
    if (p.empty()) fail("generate: an empty prompt (give at least one token, e.g. the BOS id)");
    L = std::max(L, p.size());
  }
  const int64_t B = static_cast<int64_t>(prompts.size());
  at::Tensor ids = at::full({B, static_cast<int64_t>(L)}, options.pad_token_id, at::kLong);
  at::Tensor mask = at::zeros({B, static_cast<int64_t>(L)}, at::kLong);
  for (int64_t b = 0; b < B; ++b) {
    const auto& p = prompts[static_cast<size_t>(b)];
    const int64_t n = static_cast<int64_t>(p.size()), pad = static_cast<int64_t>(L) - n;
    ids[b].narrow(0, pad, n).copy_(at::tensor(p, at::kLong));
    mask[b].narrow(0, pad, n).fill_(1);
  }
  return generate(model, ids, mask, options, callbacks);
}

GenerateResult generate(models::CausalLM& model, const at::Tensor& input_ids,
                        const at::Tensor& attention_mask, const GenerateOptions& o,
                        const GenerateCallbacks& callbacks) {
  if (input_ids.dim() != 2 || attention_mask.sizes() != input_ids.sizes()) {
    fail("generate: input_ids and attention_mask must both be [B, L]");
  }
  if (o.do_sample && o.temperature <= 0) {
    fail("generate: temperature must be > 0 when sampling (use greedy decoding for temperature 0)");
  }
  if (!o.stop_strings.empty() && !callbacks.decode) fail("generate: stop strings need a decode callback");
  const int64_t B = input_ids.size(0);
  at::InferenceMode inference;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);

  GenerateResult result;
  result.rows.resize(static_cast<size_t>(B));
  std::vector<bool> done(static_cast<size_t>(B), false);
  at::Tensor sequence = input_ids.to(at::kLong);  // [B, L + t]: what the repetition penalty sees
  const at::Tensor prompt = sequence;             // [B, L]: the encoder repetition penalty's ids
  const int64_t prompt_length = sequence.size(1);
  const LogitsProcessing processing = logits_processing(o);
  at::Tensor mask = attention_mask.to(at::kLong);
  std::vector<at::Tensor> steps;
  models::KvCache cache;
  models::CausalLmInputs in;
  in.input_ids = sequence;
  in.attention_mask = mask;

  for (int64_t step = 0; step < o.max_new_tokens; ++step) {
    const at::Tensor logits = model.forward(in, &cache, {}).logits;  // [B, T, V]
    const at::Tensor scores = process_logits(logits.select(1, logits.size(1) - 1).to(at::kFloat), sequence,
                                             prompt_length, prompt, processing);
    if (o.output_scores) result.scores.push_back(scores);
    at::Tensor next;  // [B]
    if (o.do_sample) {
      next = at::multinomial(at::softmax(scores, -1), 1, /*replacement=*/false, gen).squeeze(1);
    } else {
      next = scores.argmax(-1);
    }
    // Finished rows emit the pad id, as transformers does when eos can end a row.
    const at::Tensor finished =
        at::tensor(std::vector<int64_t>(done.begin(), done.end()), at::kLong).to(at::kBool);
    next = next.masked_fill(finished, o.pad_token_id);
    steps.push_back(next);
    sequence = at::cat({sequence, next.unsqueeze(1)}, 1);
    mask = at::cat({mask, at::ones({B, 1}, at::kLong)}, 1);

    const auto next_ids = next.contiguous();
    const int64_t* ptr = next_ids.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      if (done[static_cast<size_t>(b)]) continue;
      GeneratedRow& row = result.rows[static_cast<size_t>(b)];
      const int64_t token = ptr[b];
      row.ids.push_back(token);
      if (callbacks.on_token) callbacks.on_token(b, token);
      if (std::find(o.eos_token_ids.begin(), o.eos_token_ids.end(), token) != o.eos_token_ids.end()) {
        done[static_cast<size_t>(b)] = true;
        row.finish_reason = "eos";
        continue;
      }
      if (!o.stop_strings.empty()) {
        const std::string text = callbacks.decode(row.ids);
        size_t cut = std::string::npos;
        for (const std::string& stop : o.stop_strings) {
          if (!stop.empty()) cut = std::min(cut, text.find(stop));
        }
        if (cut != std::string::npos) {
          done[static_cast<size_t>(b)] = true;
          row.finish_reason = "stop";
          row.text = text.substr(0, cut);
        }
      }
    }
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; })) break;
    in.input_ids = next.unsqueeze(1);
    in.attention_mask = mask;
  }
  for (int64_t b = 0; b < B; ++b) {
    GeneratedRow& row = result.rows[static_cast<size_t>(b)];
    if (row.finish_reason.empty()) row.finish_reason = "length";
    if (callbacks.decode && row.finish_reason != "stop") row.text = callbacks.decode(row.ids);
  }
  result.steps = static_cast<int64_t>(steps.size());
  result.tokens = steps.empty() ? at::zeros({B, 0}, at::kLong) : at::stack(steps, 1);
  return result;
}

}  // namespace qlora::infer
