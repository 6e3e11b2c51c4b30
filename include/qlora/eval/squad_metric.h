// Extractive-QA exact match and token F1, equal to the official scripts:
//   v1: SQuAD v1.1 evaluate-v1.1.py (huggingface/evaluate "squad"), and MLQA's script when the
//       normalisation is mlqa. Every gold answer counts; an empty prediction scores F1 0.
//   v2: SQuAD v2.0 evaluate-v2.0.py (transformers squad_metrics, huggingface/evaluate "squad_v2"):
//       gold answers that normalise to "" are dropped ([""] when none is left); F1 = EM =
//       (gold tokens == predicted tokens) when either is empty; no-answer threshold; HasAns/NoAns
//       breakdown; best_exact/best_f1 over thresholds.
// Scores are the scripts' (a per-question max over gold answers, mean ×100 in reference order).
// qlora's one rule of its own: a reference question without a prediction scores 0 and counts in
// `total` (as v1.1 and MLQA do; the v2 script would leave it out of `total`).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qlora/core/jsonl.h"
#include "qlora/eval/answer_normalizer.h"

namespace qlora::eval {

// One reference question. `answers` are the gold texts; empty for an unanswerable question.
// has-answer (HasAns/NoAns) means `answers` is non-empty, as in the official v2 script.
struct QaReference {
  std::string id;
  std::vector<std::string> answers;
  bool is_impossible = false;  // SQuAD v2 flag; selects v2 under SquadVersion::auto_detect
};

struct QaPrediction {
  std::string id;
  std::string text;                             // prediction_text
  std::optional<double> no_answer_probability;  // absent counts as 0.0 (what HF run_qa passes)
};

enum class SquadVersion {
  auto_detect,  // v2 when any reference is_impossible, else v1
  v1,
  v2,
};

// "auto" / "v1" / "v2" (also "1.1", "2.0"); anything else is an Error.
SquadVersion parse_squad_version(const std::string& name);
const char* squad_version_name(SquadVersion version);

struct SquadMetricOptions {
  SquadVersion version = SquadVersion::auto_detect;
  Normalization normalize = Normalization::squad;
  std::string lang;           // MLQA article rules: required with mlqa; ignored by squad normalisation
  double na_threshold = 1.0;  // v2: no_answer_probability > na_threshold predicts "no answer"
};

struct QuestionScore {
  std::string id;
  bool has_answer = false;  // gold answers non-empty
  bool predicted = false;   // a prediction with this id exists
  double exact = 0.0;       // max over gold answers (0 or 1); 0 when not predicted
  double f1 = 0.0;          // max over gold answers, in [0, 1]; 0 when not predicted
  // v2 after apply_no_ans_threshold (equal to exact/f1 for v1).
  double exact_thresh = 0.0;
  double f1_thresh = 0.0;
};

struct ScoreBlock {
  double exact = 0.0;  // ×100
  double f1 = 0.0;     // ×100
  int64_t total = 0;
};

struct SquadMetricResult {
  SquadVersion version = SquadVersion::v1;  // resolved, never auto_detect
  SquadMetricOptions options;
  std::vector<QuestionScore> questions;  // in reference order

  ScoreBlock all;
  std::optional<ScoreBlock> has_ans;  // v2, when some question has answers
  std::optional<ScoreBlock> no_ans;   // v2, when some question has none
  // v2: the best scores over no-answer thresholds (find_all_best_thresh), ×100.
  double best_exact = 0.0;
  double best_exact_thresh = 0.0;
  double best_f1 = 0.0;
  double best_f1_thresh = 0.0;

  std::vector<std::string> missing_ids;  // references without a prediction (scored 0)
  std::vector<std::string> unknown_ids;  // predictions whose id is not a reference (ignored)

  // The keys Hugging Face evaluate returns: {"exact_match", "f1"} for v1; for v2 "exact", "f1",
  // "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_*", "best_exact",
  // "best_exact_thresh", "best_f1", "best_f1_thresh" (HasAns_/NoAns_ only when non-empty).
  Json to_json() const;
  // What was scored and how: version, normalize, lang (mlqa), na_threshold (v2), questions, missing,
  // unknown_predictions, and up to 10 example ids of each.
  Json details_json() const;
};

// Scores `predictions` against `references`. Errors: no references, a duplicate id on either side,
// v1 with a question that has no gold answers (the v1 script fails on it), malformed UTF-8, an
// unknown MLQA language, a NaN threshold or probability.
SquadMetricResult squad_metric(const std::vector<QaReference>& references,
                               const std::vector<QaPrediction>& predictions,
                               const SquadMetricOptions& options);

// Per-question scores against several gold answers, as the scripts' compute_exact/compute_f1 with
// the max over gold answers (v2 filtering included). Exposed for tests and per-example reports.
double exact_match_score(const std::string& prediction, const std::vector<std::string>& golds,
                         const AnswerNormalizer& normalizer, SquadVersion version);
double f1_score(const std::string& prediction, const std::vector<std::string>& golds,
                const AnswerNormalizer& normalizer, SquadVersion version);

}  // namespace qlora::eval
