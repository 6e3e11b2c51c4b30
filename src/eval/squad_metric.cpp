#include "qlora/eval/squad_metric.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "qlora/core/error.h"
#include "qlora/core/suggest.h"

namespace qlora::eval {

namespace {

// The gold answers as the version sees them, normalised once: v2 drops those that normalise to ""
// and falls back to [""] (its get_raw_scores).
struct NormalizedGolds {
  std::vector<std::string> texts;
  std::vector<std::vector<std::string>> tokens;
};

NormalizedGolds normalize_golds(const std::vector<std::string>& golds, const AnswerNormalizer& normalizer,
                                SquadVersion version) {
  NormalizedGolds out;
  for (const auto& gold : golds) {
    auto tokens = normalizer.tokens(gold);
    if (version == SquadVersion::v2 && tokens.empty()) continue;
    out.texts.push_back(normalizer.normalize(gold));
    out.tokens.push_back(std::move(tokens));
  }
  if (version == SquadVersion::v2 && out.texts.empty()) {
    out.texts.emplace_back();
    out.tokens.emplace_back();
  }
  return out;
}

// compute_f1 / f1_score of the scripts. Same operations in the same order as Python, so the
// doubles are bit-identical.
double token_f1(const std::vector<std::string>& gold, const std::vector<std::string>& pred,
                SquadVersion version) {
  if (version == SquadVersion::v2 && (gold.empty() || pred.empty())) return gold == pred ? 1.0 : 0.0;
  std::unordered_map<std::string, int64_t> gold_counts;
  for (const auto& token : gold) ++gold_counts[token];
  int64_t num_same = 0;
  for (const auto& token : pred) {
    auto it = gold_counts.find(token);
    if (it != gold_counts.end() && it->second > 0) {
      --it->second;
      ++num_same;
    }
  }
  if (num_same == 0) return 0.0;
  const double precision = 1.0 * static_cast<double>(num_same) / static_cast<double>(pred.size());
  const double recall = 1.0 * static_cast<double>(num_same) / static_cast<double>(gold.size());
  return (2 * precision * recall) / (precision + recall);
}

struct RawScore {
  double exact = 0.0;
  double f1 = 0.0;
};

RawScore score_one(const std::string& prediction, const NormalizedGolds& golds,
                   const AnswerNormalizer& normalizer, SquadVersion version) {
  if (golds.texts.empty()) {
    fail(
        "v1 scoring needs at least one gold answer per question (the v1.1 script fails on none); "
        "pass --squad-version v2 (SquadEvalOptions.version) for unanswerable questions");
  }
  const auto pred_tokens = normalizer.tokens(prediction);
  const std::string pred_text = normalizer.normalize(prediction);
  RawScore best;
  for (size_t i = 0; i < golds.texts.size(); ++i) {
    best.exact = std::max(best.exact, golds.texts[i] == pred_text ? 1.0 : 0.0);
    best.f1 = std::max(best.f1, token_f1(golds.tokens[i], pred_tokens, version));
  }
  return best;
}

SquadVersion resolve_version(const std::vector<QaReference>& references, SquadVersion requested) {
  if (requested != SquadVersion::auto_detect) return requested;
  const bool any_impossible =
      std::any_of(references.begin(), references.end(), [](const QaReference& r) { return r.is_impossible; });
  return any_impossible ? SquadVersion::v2 : SquadVersion::v1;
}

ScoreBlock make_block(const std::vector<QuestionScore>& questions, bool (*keep)(const QuestionScore&)) {
  // Plain left-to-right sums in reference order, as Python 3.11's sum() and the v1 loop do.
  ScoreBlock block;
  double exact = 0.0, f1 = 0.0;
  for (const auto& q : questions) {
    if (!keep(q)) continue;
    exact += q.exact_thresh;
    f1 += q.f1_thresh;
    ++block.total;
  }
  block.exact = 100.0 * exact / static_cast<double>(block.total);
  block.f1 = 100.0 * f1 / static_cast<double>(block.total);
  return block;
}

// find_best_thresh of the official v2 script: start from "every question predicted unanswerable",
// then walk the predictions by increasing no-answer probability (stable: ties in prediction order),
// letting each answer in turn. Unanswered questions take no part and score 0 at every threshold.
void find_best_thresh(const std::vector<QaPrediction>& predictions,
                      const std::unordered_map<std::string, size_t>& question_of,
                      const std::vector<QuestionScore>& questions, bool use_f1, double& best_score_out,
                      double& best_thresh_out) {
  double cur_score = 0.0;
  for (const auto& q : questions) cur_score += (q.predicted && !q.has_answer) ? 1.0 : 0.0;
  double best_score = cur_score;
  double best_thresh = 0.0;

  std::vector<size_t> order(predictions.size());
  std::iota(order.begin(), order.end(), 0);
  auto prob = [&](size_t i) { return predictions[i].no_answer_probability.value_or(0.0); };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return prob(a) < prob(b); });
  for (size_t i : order) {
    auto it = question_of.find(predictions[i].id);
    if (it == question_of.end()) continue;
    const QuestionScore& q = questions[it->second];
    double diff = 0.0;
    if (q.has_answer) {
      diff = use_f1 ? q.f1 : q.exact;
    } else {
      diff = predictions[i].text.empty() ? 0.0 : -1.0;  // the raw text's truthiness, as the script
    }
    cur_score += diff;
    if (cur_score > best_score) {
      best_score = cur_score;
      best_thresh = prob(i);
    }
  }
  best_score_out = 100.0 * best_score / static_cast<double>(questions.size());
  best_thresh_out = best_thresh;
}

void check_unique(const std::string& what, const std::string& id,
                  std::unordered_map<std::string, size_t>& seen, size_t index) {
  if (!seen.emplace(id, index).second) fail("duplicate " + what + " id '" + id + "'");
}

Json block_json(const ScoreBlock& block) {
  return Json{{"exact", block.exact}, {"f1", block.f1}, {"total", block.total}};
}

Json examples(const std::vector<std::string>& ids) {
  Json out = Json::array();
  for (size_t i = 0; i < ids.size() && i < 10; ++i) out.push_back(ids[i]);
  return out;
}

}  // namespace

SquadVersion parse_squad_version(const std::string& name) {
  if (name == "auto") return SquadVersion::auto_detect;
  if (name == "v1" || name == "1.1") return SquadVersion::v1;
  if (name == "v2" || name == "2.0") return SquadVersion::v2;
  fail("unknown SQuAD version '" + name + "' (expected auto, v1 or v2)" +
       did_you_mean(name, {"auto", "v1", "v2"}));
}

const char* squad_version_name(SquadVersion version) {
  switch (version) {
    case SquadVersion::v1:
      return "v1";
    case SquadVersion::v2:
      return "v2";
    default:
      return "auto";
  }
}

double exact_match_score(const std::string& prediction, const std::vector<std::string>& golds,
                         const AnswerNormalizer& normalizer, SquadVersion version) {
  return score_one(prediction, normalize_golds(golds, normalizer, version), normalizer, version).exact;
}

double f1_score(const std::string& prediction, const std::vector<std::string>& golds,
                const AnswerNormalizer& normalizer, SquadVersion version) {
  return score_one(prediction, normalize_golds(golds, normalizer, version), normalizer, version).f1;
}

SquadMetricResult squad_metric(const std::vector<QaReference>& references,
                               const std::vector<QaPrediction>& predictions,
                               const SquadMetricOptions& options) {
  if (references.empty()) fail("no reference questions to score");
  if (std::isnan(options.na_threshold)) fail("no-answer threshold is NaN");
  const AnswerNormalizer normalizer(options.normalize, options.lang);

  SquadMetricResult result;
  result.options = options;
  result.version = resolve_version(references, options.version);
  const SquadVersion version = result.version;

  std::unordered_map<std::string, size_t> question_of;
  for (size_t i = 0; i < references.size(); ++i) check_unique("reference", references[i].id, question_of, i);
  std::unordered_map<std::string, size_t> prediction_of;
  for (size_t i = 0; i < predictions.size(); ++i) {
    const auto& p = predictions[i];
    check_unique("prediction", p.id, prediction_of, i);
    if (p.no_answer_probability && std::isnan(*p.no_answer_probability)) {
      fail("prediction '" + p.id + "': no_answer_probability is NaN");
    }
    if (!question_of.count(p.id)) result.unknown_ids.push_back(p.id);
  }

  for (const auto& ref : references) {
    QuestionScore q;
    q.id = ref.id;
    q.has_answer = !ref.answers.empty();
    auto it = prediction_of.find(ref.id);
    if (it == prediction_of.end()) {
      if (version == SquadVersion::v1 && ref.answers.empty()) {
        fail("question '" + ref.id + "' has no gold answers, which v1 cannot score; pass --squad-version v2");
      }
      result.missing_ids.push_back(ref.id);
      result.questions.push_back(q);
      continue;
    }
    const QaPrediction& pred = predictions[it->second];
    q.predicted = true;
    RawScore raw;
    try {
      raw = score_one(pred.text, normalize_golds(ref.answers, normalizer, version), normalizer, version);
    } catch (const Error& e) {
      fail("question '" + ref.id + "': " + e.what());
    }
    q.exact = q.exact_thresh = raw.exact;
    q.f1 = q.f1_thresh = raw.f1;
    // apply_no_ans_threshold: above the threshold the model says "no answer".
    if (version == SquadVersion::v2 && pred.no_answer_probability.value_or(0.0) > options.na_threshold) {
      q.exact_thresh = q.f1_thresh = q.has_answer ? 0.0 : 1.0;
    }
    result.questions.push_back(q);
  }

  result.all = make_block(result.questions, [](const QuestionScore&) { return true; });
  if (version == SquadVersion::v2) {
    const bool any_has = std::any_of(result.questions.begin(), result.questions.end(),
                                     [](const QuestionScore& q) { return q.has_answer; });
    const bool any_no = std::any_of(result.questions.begin(), result.questions.end(),
                                    [](const QuestionScore& q) { return !q.has_answer; });
    if (any_has)
      result.has_ans = make_block(result.questions, [](const QuestionScore& q) { return q.has_answer; });
    if (any_no)
      result.no_ans = make_block(result.questions, [](const QuestionScore& q) { return !q.has_answer; });
    find_best_thresh(predictions, question_of, result.questions, false, result.best_exact,
                     result.best_exact_thresh);
    find_best_thresh(predictions, question_of, result.questions, true, result.best_f1, result.best_f1_thresh);
  }
  return result;
}

Json SquadMetricResult::to_json() const {
  if (version == SquadVersion::v1) return Json{{"exact_match", all.exact}, {"f1", all.f1}};
  Json out = block_json(all);
  auto merge = [&](const char* prefix, const ScoreBlock& block) {
    const Json fields = block_json(block);
    for (const auto& [key, value] : fields.items()) out[std::string(prefix) + "_" + key] = value;
  };
  if (has_ans) merge("HasAns", *has_ans);
  if (no_ans) merge("NoAns", *no_ans);
  out["best_exact"] = best_exact;
  out["best_exact_thresh"] = best_exact_thresh;
  out["best_f1"] = best_f1;
  out["best_f1_thresh"] = best_f1_thresh;
  return out;
}

Json SquadMetricResult::details_json() const {
  Json out{{"version", squad_version_name(version)},
           {"normalize", normalization_name(options.normalize)},
           {"questions", static_cast<int64_t>(questions.size())},
           {"missing", static_cast<int64_t>(missing_ids.size())},
           {"missing_examples", examples(missing_ids)},
           {"unknown_predictions", static_cast<int64_t>(unknown_ids.size())},
           {"unknown_examples", examples(unknown_ids)}};
  if (options.normalize == Normalization::mlqa) out["lang"] = options.lang;  // squad has no language
  if (version == SquadVersion::v2) out["na_threshold"] = options.na_threshold;
  return out;
}

}  // namespace qlora::eval
