// From per-feature start/end logits to answer texts, exactly as Hugging Face utils_qa.py
// postprocess_qa_predictions (run_qa's post_processing_function).
//
// Per example, over its features in order:
//   - the null score of a feature is start[0] + end[0] (index 0, whatever the cls index); the
//     minimum over the features is kept (the first one on ties);
//   - candidates are the n_best_size highest start logits x the n_best_size highest end logits, each
//     in descending logit order (np.argsort(x)[-1 : -n_best_size - 1 : -1]); a pair is skipped when
//     either token is not a context token, end < start, or end - start + 1 > max_answer_length;
//     score = start logit + end logit in float32, text = context[offset_s.begin : offset_e.end];
//   - v2 adds the minimum null candidate; the n_best_size best by score are kept (a stable sort:
//     equal scores keep candidate order); v2 appends the null if it is not among them; when nothing is
//     left, or only one candidate with empty text, "empty" (logits 0) is put first;
//   - probabilities are the softmax of the kept scores;
//   - v1 answers the best text; v2 takes the best candidate with non-empty text, diff = null score -
//     its start logit - its end logit (float32), and answers "" when diff > null_score_diff_threshold.
//
// Ties in the logits: numpy's argsort (quicksort/introsort, or SIMD sorts) is not stable, so with
// equal logits the order HF visits candidates is unspecified; qlora puts the higher index first (what
// a stable ascending sort, reversed, gives). With no equal logits in a row both are identical.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qlora/core/jsonl.h"
#include "qlora/qa/features.h"

namespace qlora::qa {

struct QaPostprocessOptions {
  int64_t n_best_size = 20;
  int64_t max_answer_length = 30;  // tokens
  bool version_2_with_negative = false;
  double null_score_diff_threshold = 0.0;
};

// One entry of an n-best list (HF nbest_predictions.json), best first.
struct QaNbestEntry {
  std::string text;
  float start_logit = 0.0f;
  float end_logit = 0.0f;
  float score = 0.0f;        // start_logit + end_logit (float32, as numpy)
  double probability = 0.0;  // softmax over the list's scores
};

struct QaAnswerPrediction {
  std::string id;
  std::string prediction_text;  // "" predicts "no answer" (v2 only)
  // v2 only: null score - best non-null start logit - end logit (HF null_odds.json).
  std::optional<float> null_score_diff;
  std::vector<QaNbestEntry> nbest;
};

// start_logits[i] and end_logits[i] are the model outputs for feature i (length T each). Errors: a
// row count or length that does not match the features, a NaN logit, repeated example ids, a
// feature whose example id is unknown, an example without features, n_best_size or max_answer_length < 1.
std::vector<QaAnswerPrediction> postprocess_qa_predictions(
    const std::vector<QaExample>& examples, const QaEvalFeatures& features,
    const std::vector<std::vector<float>>& start_logits, const std::vector<std::vector<float>>& end_logits,
    const QaPostprocessOptions& options);

// The predictions JSONL record of docs/DATA_FORMATS.md: {"id", "prediction_text"} plus, for v2,
// "no_answer_probability": 0.0 as run_qa writes it (the null decision is already in the text).
Json prediction_to_json(const QaAnswerPrediction& prediction, bool version_2_with_negative);

// {"id", "nbest": [{"text", "start_logit", "end_logit", "score", "probability"}], "null_score_diff"?}.
Json nbest_to_json(const QaAnswerPrediction& prediction);

}  // namespace qlora::qa
