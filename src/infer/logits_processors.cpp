// transformers 5.17 generation/logits_process.py, with the same tensor operations so that -inf placement
// and rounding agree (the tests compare processed scores exactly).
#include "qlora/infer/logits_processors.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>
#include <string>

#include "qlora/core/error.h"

namespace qlora::infer {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// [V] bool: true at `ids` (torch.isin(arange(V), ids)).
at::Tensor vocab_mask(const at::Tensor& scores, const std::vector<int64_t>& ids) {
  const int64_t V = scores.size(-1);
  at::Tensor mask = at::zeros({V}, at::TensorOptions().dtype(at::kBool));
  for (int64_t id : ids) {
    if (id >= 0 && id < V) mask[id] = true;
  }
  return mask;
}

}  // namespace

at::Tensor repetition_penalty(const at::Tensor& scores, const at::Tensor& input_ids, double penalty) {
  if (penalty <= 0) fail("repetition_penalty must be > 0, got " + std::to_string(penalty));
  const at::Tensor score = at::gather(scores, 1, input_ids);  // [N, L]
  const at::Tensor penalized = at::where(score < 0, score * penalty, score / penalty);
  return scores.scatter(1, input_ids, penalized);
}

at::Tensor encoder_repetition_penalty(const at::Tensor& scores, const at::Tensor& encoder_ids,
                                      double penalty) {
  if (penalty <= 0) fail("encoder_repetition_penalty must be > 0, got " + std::to_string(penalty));
  // HF stores 1 / penalty as a Python float (double), then multiplies / divides fp32 scores by it.
  return repetition_penalty(scores, encoder_ids, 1.0 / penalty);
}

void ban_repeated_ngrams(const at::Tensor& sequences, at::Tensor& scores, int64_t n) {
  if (n <= 0) return;
  const int64_t N = sequences.size(0), L = sequences.size(1);
  if (L + 1 < n) return;
  const at::Tensor rows = sequences.to(at::kLong).contiguous();
  const int64_t* ids = rows.data_ptr<int64_t>();
  std::vector<int64_t> banned_rows, banned_tokens;
  for (int64_t r = 0; r < N; ++r) {
    const int64_t* s = ids + r * L;
    // n-grams of the row whose first n-1 tokens equal its last n-1 tokens: their last token is banned.
    const std::vector<int64_t> tail(s + L - (n - 1), s + L);
    for (int64_t i = 0; i + n <= L; ++i) {
      if (std::equal(tail.begin(), tail.end(), s + i)) {
        banned_rows.push_back(r);
        banned_tokens.push_back(s[i + n - 1]);
      }
    }
  }
  if (banned_rows.empty()) return;
  const at::TensorOptions longs = at::TensorOptions().dtype(at::kLong);
  scores.index_put_({at::tensor(banned_rows, longs), at::tensor(banned_tokens, longs)},
                    at::scalar_tensor(-kInf, scores.options()));
}

at::Tensor ban_bad_words(const at::Tensor& scores, const at::Tensor& input_ids,
                         const std::vector<std::vector<int64_t>>& bad_words_ids,
                         const std::vector<int64_t>& eos_token_ids) {
  const int64_t N = scores.size(0), V = scores.size(1), L = input_ids.size(1);
  at::Tensor banned = at::zeros({N, V}, at::TensorOptions().dtype(at::kBool));
  const at::Tensor rows = input_ids.to(at::kLong).contiguous();
  const int64_t* ids = rows.data_ptr<int64_t>();
  for (const auto& word : bad_words_ids) {
    if (word.empty()) fail("bad_words_ids: an empty id sequence");
    for (int64_t id : word) {
      if (id < 0 || id >= V) {
        fail("bad_words_ids: id " + std::to_string(id) + " is outside the vocabulary (" + std::to_string(V) +
             ")");
      }
    }
    if (word.size() == 1) {
      if (std::find(eos_token_ids.begin(), eos_token_ids.end(), word[0]) != eos_token_ids.end()) continue;
      banned.select(1, word[0]).fill_(true);
      continue;
    }
    const int64_t n = static_cast<int64_t>(word.size());
    if (n > L) continue;  // HF: longer than the context, ignored
    for (int64_t r = 0; r < N; ++r) {
      if (std::equal(word.begin(), word.end() - 1, ids + r * L + L - (n - 1))) banned[r][word.back()] = true;
    }
  }
  return scores.masked_fill(banned, -kInf);
}

at::Tensor suppress_tokens(const at::Tensor& scores, const std::vector<int64_t>& ids) {
  return at::where(vocab_mask(scores, ids), at::scalar_tensor(-kInf, scores.options()), scores);
}

at::Tensor temperature_warp(const at::Tensor& scores, double temperature) {
  if (temperature <= 0) fail("temperature must be > 0 when sampling, got " + std::to_string(temperature));
  return scores / temperature;
}

at::Tensor top_k_filter(const at::Tensor& scores, int64_t top_k, int64_t min_tokens_to_keep) {
  const int64_t k = std::min(std::max(top_k, min_tokens_to_keep), scores.size(-1));
  const at::Tensor kth = std::get<0>(at::topk(scores, k)).narrow(-1, k - 1, 1);  // [N, 1]
  return scores.masked_fill(scores < kth, -kInf);
}

at::Tensor top_p_filter(const at::Tensor& scores, double top_p, int64_t min_tokens_to_keep) {
  if (top_p < 0 || top_p > 1) fail("top_p must be in [0, 1], got " + std::to_string(top_p));
  const auto [sorted, indices] = at::sort(scores, /*dim=*/-1, /*descending=*/false);
  const at::Tensor cumulative = sorted.softmax(-1).cumsum(-1);
  at::Tensor remove = cumulative <= (1 - top_p);  // [N, V] in ascending order
  remove.narrow(-1, remove.size(-1) - min_tokens_to_keep, min_tokens_to_keep).fill_(false);
  const at::Tensor unsorted = remove.scatter(1, indices, remove);
  return scores.masked_fill(unsorted, -kInf);
}

at::Tensor process_logits(const at::Tensor& scores, const at::Tensor& input_ids, int64_t input_length,
                          const at::Tensor& encoder_ids, const LogitsProcessing& p) {
  at::Tensor s = scores;
  const int64_t L = input_ids.size(1);
  if (p.encoder_repetition_penalty != 1.0 && encoder_ids.defined()) {
    s = encoder_repetition_penalty(s, encoder_ids, p.encoder_repetition_penalty);
  }
  if (p.repetition_penalty != 1.0) s = repetition_penalty(s, input_ids, p.repetition_penalty);
  if (p.no_repeat_ngram_size > 0) {
    s = s.clone();
    ban_repeated_ngrams(input_ids, s, p.no_repeat_ngram_size);
  }
  if (!p.bad_words_ids.empty()) s = ban_bad_words(s, input_ids, p.bad_words_ids, p.eos_token_ids);
  const bool has_eos = !p.eos_token_ids.empty();
  if (has_eos && p.min_length > 0 && L < p.min_length) s = suppress_tokens(s, p.eos_token_ids);
  if (has_eos && p.min_new_tokens > 0 && L - input_length < p.min_new_tokens) {
    s = suppress_tokens(s, p.eos_token_ids);
  }
  if (!p.suppress_tokens.empty()) s = suppress_tokens(s, p.suppress_tokens);
  if (!p.begin_suppress_tokens.empty() && L == input_length) s = suppress_tokens(s, p.begin_suppress_tokens);
  if (!p.do_sample) return s;
  if (p.temperature != 1.0) s = temperature_warp(s, p.temperature);
  if (p.top_k != 0) s = top_k_filter(s, p.top_k, p.min_tokens_to_keep);
  if (p.top_p < 1.0) s = top_p_filter(s, p.top_p, p.min_tokens_to_keep);
  return s;
}

}  // namespace qlora::infer
