#include "qlora/qa/postprocess.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "qlora/core/error.h"
#include "qlora/core/unicode.h"

namespace qlora::qa {
namespace {

struct Candidate {
  CharSpan offsets;
  float score;
  float start_logit;
  float end_logit;
};

// np.argsort(row)[-1 : -k - 1 : -1]: the k largest, largest first; equal values: higher index first.
std::vector<int64_t> top_indices(const std::vector<float>& row, int64_t k) {
  std::vector<int64_t> order(row.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int64_t a, int64_t b) { return row[a] > row[b] || (row[a] == row[b] && a > b); });
  order.resize(std::min<size_t>(order.size(), static_cast<size_t>(k)));
  return order;
}

// Python context[begin:end] on code points (clamped; empty when begin >= end).
std::string slice_context(const std::string& context, const std::vector<size_t>& char_to_byte,
                          CharSpan span) {
  const int64_t n = static_cast<int64_t>(char_to_byte.size()) - 1;
  const int64_t begin = std::clamp<int64_t>(span.first, 0, n);
  const int64_t end = std::clamp<int64_t>(span.second, 0, n);
  if (begin >= end) return "";
  return context.substr(char_to_byte[begin], char_to_byte[end] - char_to_byte[begin]);
}

void check_inputs(const QaEvalFeatures& features, const std::vector<std::vector<float>>& start_logits,
                  const std::vector<std::vector<float>>& end_logits, const QaPostprocessOptions& options) {
  if (options.n_best_size < 1)
    fail("n_best_size must be at least 1, got " + std::to_string(options.n_best_size));
  if (options.max_answer_length < 1) {
    fail("max_answer_length must be at least 1, got " + std::to_string(options.max_answer_length));
  }
  const size_t n = features.example_ids.size();
  if (features.offsets.size() != n) fail("QA features: offsets and example ids have different counts");
  if (start_logits.size() != n || end_logits.size() != n) {
    fail("got " + std::to_string(start_logits.size()) + " start and " + std::to_string(end_logits.size()) +
         " end logit rows for " + std::to_string(n) + " features");
  }
  for (size_t f = 0; f < n; ++f) {
    const size_t T = features.offsets[f].size();
    for (const auto* rows : {&start_logits, &end_logits}) {
      const std::vector<float>& row = (*rows)[f];
      const char* which = rows == &start_logits ? "start" : "end";
      if (row.size() != T) {
        fail("feature " + std::to_string(f) + " (example \"" + features.example_ids[f] + "\"): " + which +
             " logits have length " + std::to_string(row.size()) + ", the feature has " + std::to_string(T) +
             " tokens");
      }
      for (float x : row) {
        if (std::isnan(x))
          fail("feature " + std::to_string(f) + " (example \"" + features.example_ids[f] + "\"): NaN " +
               which + " logit");
      }
    }
  }
}

}  // namespace

std::vector<QaAnswerPrediction> postprocess_qa_predictions(
    const std::vector<QaExample>& examples, const QaEvalFeatures& features,
    const std::vector<std::vector<float>>& start_logits, const std::vector<std::vector<float>>& end_logits,
    const QaPostprocessOptions& options) {
  check_inputs(features, start_logits, end_logits, options);
  std::unordered_map<std::string, size_t> example_of_id;
  for (size_t k = 0; k < examples.size(); ++k) {
    if (!example_of_id.emplace(examples[k].id, k).second)
      fail("repeated example id \"" + examples[k].id + "\"");
  }
  std::vector<std::vector<size_t>> features_of(examples.size());
  for (size_t f = 0; f < features.example_ids.size(); ++f) {
    const auto it = example_of_id.find(features.example_ids[f]);
    if (it == example_of_id.end())
      fail("feature " + std::to_string(f) + " has unknown example id \"" + features.example_ids[f] + "\"");
    features_of[it->second].push_back(f);
  }

  const bool v2 = options.version_2_with_negative;
  std::vector<QaAnswerPrediction> out;
  out.reserve(examples.size());
  for (size_t k = 0; k < examples.size(); ++k) {
    const QaExample& example = examples[k];
    // HF would answer "empty" (v1) or reuse the previous example's null score (v2).
    if (features_of[k].empty()) fail("example \"" + example.id + "\" has no features");
    std::optional<Candidate> min_null;
    std::vector<Candidate> candidates;
    for (size_t f : features_of[k]) {
      const std::vector<float>& start = start_logits[f];
      const std::vector<float>& end = end_logits[f];
      const std::vector<std::optional<CharSpan>>& offsets = features.offsets[f];
      const float null_score = start[0] + end[0];
      if (!min_null || min_null->score > null_score)
        min_null = Candidate{{0, 0}, null_score, start[0], end[0]};
      const std::vector<int64_t> end_indices = top_indices(end, options.n_best_size);
      for (int64_t s : top_indices(start, options.n_best_size)) {
        for (int64_t e : end_indices) {
          if (!offsets[s] || !offsets[e]) continue;
          if (e < s || e - s + 1 > options.max_answer_length) continue;
          candidates.push_back(
              {{offsets[s]->first, offsets[e]->second}, start[s] + end[e], start[s], end[e]});
        }
      }
    }
    if (v2 && min_null) candidates.push_back(*min_null);
    // Python's sorted(..., reverse=True) is stable: equal scores keep candidate order.
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const Candidate& a, const Candidate& b) { return a.score > b.score; });
    if (static_cast<int64_t>(candidates.size()) > options.n_best_size) candidates.resize(options.n_best_size);
    if (v2 && min_null && std::none_of(candidates.begin(), candidates.end(), [](const Candidate& c) {
          return c.offsets == CharSpan{0, 0};
        })) {
      candidates.push_back(*min_null);
    }

    QaAnswerPrediction prediction;
    prediction.id = example.id;
    const std::vector<size_t> char_to_byte = utf8_char_to_byte(example.context);
    for (const Candidate& c : candidates) {
      prediction.nbest.push_back({slice_context(example.context, char_to_byte, c.offsets), c.start_logit,
                                  c.end_logit, c.score, 0.0});
    }
    if (prediction.nbest.empty() || (prediction.nbest.size() == 1 && prediction.nbest[0].text.empty())) {
      prediction.nbest.insert(prediction.nbest.begin(), QaNbestEntry{"empty", 0.0f, 0.0f, 0.0f, 0.0});
    }
    // Softmax in double; numpy does it in float32 (differences ~1e-7).
    double max_score = -INFINITY;
    for (const QaNbestEntry& entry : prediction.nbest)
      max_score = std::max(max_score, static_cast<double>(entry.score));
    double total = 0.0;
    for (QaNbestEntry& entry : prediction.nbest)
      total += (entry.probability = std::exp(entry.score - max_score));
    for (QaNbestEntry& entry : prediction.nbest) entry.probability /= total;

    if (!v2) {
      prediction.prediction_text = prediction.nbest[0].text;
    } else {
      const auto best = std::find_if(prediction.nbest.begin(), prediction.nbest.end(),
                                     [](const QaNbestEntry& entry) { return !entry.text.empty(); });
      if (best == prediction.nbest.end()) {  // HF: IndexError; only zero-width offsets can get here
        fail("example \"" + example.id + "\": every n-best candidate has empty text");
      }
      const float diff = (min_null->score - best->start_logit) - best->end_logit;  // float32, as numpy
      prediction.null_score_diff = diff;
      // NumPy 2 compares a float32 with a Python float in float32 (NEP 50).
      prediction.prediction_text =
          diff > static_cast<float>(options.null_score_diff_threshold) ? "" : best->text;
    }
    out.push_back(std::move(prediction));
  }
  return out;
}

Json prediction_to_json(const QaAnswerPrediction& prediction, bool version_2_with_negative) {
  Json j = {{"id", prediction.id}, {"prediction_text", prediction.prediction_text}};
  if (version_2_with_negative) j["no_answer_probability"] = 0.0;
  return j;
}

Json nbest_to_json(const QaAnswerPrediction& prediction) {
  Json list = Json::array();
  for (const QaNbestEntry& entry : prediction.nbest) {
    list.push_back({{"text", entry.text},
                    {"start_logit", entry.start_logit},
                    {"end_logit", entry.end_logit},
                    {"score", entry.score},
                    {"probability", entry.probability}});
  }
  Json j = {{"id", prediction.id}, {"nbest", list}};
  if (prediction.null_score_diff) j["null_score_diff"] = *prediction.null_score_diff;
  return j;
}

}  // namespace qlora::qa
