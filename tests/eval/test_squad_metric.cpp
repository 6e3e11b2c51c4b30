// SQuAD v1.1 / v2.0 / MLQA exact match and F1 against tests/fixtures/eval/squad_cases.json, whose
// expected values come from the official scripts (tools/gen_eval_fixtures.py): every suite per
// question and in aggregate, then Vietnamese behaviour, the no-answer threshold and qlora's rules.
#include <gtest/gtest.h>

#include <set>

#include "eval_test_util.h"
#include "qlora/eval/squad_metric.h"

namespace {

using qlora::Json;
using namespace qlora::eval;
using namespace qlora_eval_test;

std::vector<QaReference> references_of(const Json& suite) {
  std::vector<QaReference> refs;
  for (const auto& r : suite["references"]) {
    refs.push_back({r["id"].get<std::string>(), r["answers"].get<std::vector<std::string>>(),
                    r["is_impossible"].get<bool>()});
  }
  return refs;
}

std::vector<QaPrediction> predictions_of(const Json& suite) {
  std::vector<QaPrediction> preds;
  for (const auto& p : suite["predictions"]) {
    QaPrediction pred{p["id"].get<std::string>(), p["prediction_text"].get<std::string>(), std::nullopt};
    if (p.contains("no_answer_probability"))
      pred.no_answer_probability = p["no_answer_probability"].get<double>();
    preds.push_back(pred);
  }
  return preds;
}

SquadMetricOptions options_of(const Json& suite) {
  const Json& o = suite["options"];
  SquadMetricOptions options;
  options.version = parse_squad_version(o["version"].get<std::string>());
  options.normalize = parse_normalization(o["normalize"].get<std::string>());
  options.lang = o["lang"].get<std::string>();
  options.na_threshold = o["na_threshold"].get<double>();
  return options;
}

SquadMetricResult run_suite(const Json& suite) {
  return squad_metric(references_of(suite), predictions_of(suite), options_of(suite));
}

const Json& suite_named(const std::string& name) {
  for (const auto& suite : squad_cases()["suites"]) {
    if (suite["name"] == name) return suite;
  }
  throw std::runtime_error("no fixture suite " + name);
}

std::vector<std::string> keys_of(const Json& object) {
  std::vector<std::string> keys;
  for (const auto& item : object.items()) keys.push_back(item.key());
  return keys;
}

// Expected and actual aggregates: the same keys in the same order, values within tolerance.
void expect_same_aggregate(const Json& actual, const Json& expected) {
  EXPECT_EQ(keys_of(actual), keys_of(expected));
  for (const auto& item : expected.items()) {
    ASSERT_TRUE(actual.contains(item.key())) << item.key();
    const double want = item.value().get<double>();
    const double got = actual[item.key()].get<double>();
    EXPECT_TRUE(close_enough(got, want)) << item.key() << ": got " << got << ", official " << want;
    if (item.value().is_number_integer()) {
      EXPECT_TRUE(actual[item.key()].is_number_integer()) << item.key();
    }
  }
}

TEST(SquadMetricFixtures, CoverManyQuestionsInEverySemantics) {
  const Json& cases = squad_cases();
  std::set<std::string> ids;
  std::set<std::string> kinds;
  for (const auto& suite : cases["suites"]) {
    for (const auto& r : suite["references"]) ids.insert(r["id"].get<std::string>());
    kinds.insert(suite["options"]["version"].get<std::string>() + "/" +
                 suite["options"]["normalize"].get<std::string>());
  }
  EXPECT_GE(ids.size(), 60u);
  EXPECT_EQ(kinds, (std::set<std::string>{"v1/squad", "v1/mlqa", "v2/squad", "v2/mlqa"}));
}

TEST(SquadMetricFixtures, PerQuestionScoresEqualTheOfficialScripts) {
  for (const auto& suite : squad_cases()["suites"]) {
    SCOPED_TRACE(suite["name"].get<std::string>());
    const auto result = run_suite(suite);
    const Json& expected = suite["expected"]["per_question"];
    size_t scored = 0;
    for (const auto& q : result.questions) {
      SCOPED_TRACE(q.id);
      if (!expected.contains(q.id)) {
        EXPECT_FALSE(q.predicted);
        EXPECT_EQ(q.exact, 0.0);
        EXPECT_EQ(q.f1, 0.0);
        continue;
      }
      ++scored;
      const Json& want = expected[q.id];
      EXPECT_EQ(q.exact, want["exact"].get<double>());
      EXPECT_TRUE(close_enough(q.f1, want["f1"].get<double>())) << q.f1 << " vs " << want["f1"];
      if (want.contains("exact_thresh")) {
        EXPECT_EQ(q.exact_thresh, want["exact_thresh"].get<double>());
        EXPECT_TRUE(close_enough(q.f1_thresh, want["f1_thresh"].get<double>()));
      }
    }
    EXPECT_EQ(scored, expected.size());
  }
}

TEST(SquadMetricFixtures, AggregatesEqualTheOfficialScripts) {
  for (const auto& suite : squad_cases()["suites"]) {
    SCOPED_TRACE(suite["name"].get<std::string>());
    const auto result = run_suite(suite);
    expect_same_aggregate(result.to_json(), suite["expected"]["aggregate"]);
    EXPECT_EQ(static_cast<int64_t>(result.missing_ids.size()), suite["expected"]["missing"].get<int64_t>());
    EXPECT_EQ(static_cast<int64_t>(result.unknown_ids.size()),
              suite["expected"]["unknown_predictions"].get<int64_t>());
  }
}

TEST(SquadMetricFixtures, SingleQuestionFunctionsAgreeWithTheSuites) {
  const Json& suite = suite_named("v1_mlqa_vi");
  const AnswerNormalizer normalizer(Normalization::mlqa, "vi");
  for (const auto& r : suite["references"]) {
    const std::string id = r["id"];
    if (!suite["expected"]["per_question"].contains(id)) continue;
    std::string text;
    for (const auto& p : suite["predictions"]) {
      if (p["id"] == id) text = p["prediction_text"];
    }
    const auto golds = r["answers"].get<std::vector<std::string>>();
    EXPECT_EQ(exact_match_score(text, golds, normalizer, SquadVersion::v1),
              suite["expected"]["per_question"][id]["exact"].get<double>())
        << id;
    EXPECT_TRUE(close_enough(f1_score(text, golds, normalizer, SquadVersion::v1),
                             suite["expected"]["per_question"][id]["f1"].get<double>()))
        << id;
  }
}

// "của Việt Nam" vs "Việt Nam" and “Truyện Kiều” vs Truyện Kiều: SQuAD's ASCII-only rules keep the
// Vietnamese article and the curly quotes; MLQA's vi rules remove both.
TEST(SquadMetricVietnamese, MlqaNormalisationForgivesArticlesAndUnicodePunctuation) {
  const Json& squad = suite_named("v1_squad_vi")["expected"]["per_question"];
  const Json& mlqa = suite_named("v1_mlqa_vi")["expected"]["per_question"];
  for (const char* id : {"vi_article_cua", "vi_curly_quotes", "vi_guillemets", "vi_articles_all"}) {
    SCOPED_TRACE(id);
    EXPECT_EQ(squad[id]["exact"].get<double>(), 0.0);
    EXPECT_EQ(mlqa[id]["exact"].get<double>(), 1.0);
  }
  const auto squad_result = run_suite(suite_named("v1_squad_vi"));
  const auto mlqa_result = run_suite(suite_named("v1_mlqa_vi"));
  EXPECT_LT(squad_result.all.exact, mlqa_result.all.exact);
  EXPECT_TRUE(close_enough(squad_result.all.exact, 35.0));
  EXPECT_TRUE(close_enough(mlqa_result.all.exact, 55.0));
}

TEST(SquadMetricVietnamese, CapitalLettersLowerCaseLikePython) {
  const std::vector<std::string> gold = {"ĐẠI HỌC QUỐC GIA"};
  for (auto normalize : {Normalization::squad, Normalization::mlqa}) {
    const AnswerNormalizer normalizer(normalize, "vi");
    EXPECT_EQ(exact_match_score("đại học quốc gia", gold, normalizer, SquadVersion::v1), 1.0);
    EXPECT_EQ(exact_match_score("TIẾNG VIỆT", {"Tiếng Việt"}, normalizer, SquadVersion::v1), 1.0);
  }
}

TEST(SquadMetricThreshold, ProbabilityAboveTheThresholdPredictsNoAnswer) {
  // Same questions at thresholds 1.0, 0.5 and 0: raw scores never change, thresholded ones do.
  const auto at_one = run_suite(suite_named("v2_squad"));
  const auto at_half = run_suite(suite_named("v2_squad_thresh_0.5"));
  const auto at_zero = run_suite(suite_named("v2_squad_thresh_0"));
  ASSERT_EQ(at_one.questions.size(), at_half.questions.size());
  for (size_t i = 0; i < at_one.questions.size(); ++i) {
    SCOPED_TRACE(at_one.questions[i].id);
    EXPECT_EQ(at_one.questions[i].exact, at_half.questions[i].exact);
    EXPECT_EQ(at_one.questions[i].exact_thresh, at_one.questions[i].exact);  // nothing is above 1.0
    if (at_zero.questions[i].id == "v2_has_right") {
      EXPECT_EQ(at_zero.questions[i].exact_thresh, 0.0);
    }
  }
  // v2_no_article_only has probability exactly 0.5: "above" is strict, so it keeps its raw score.
  const Json& half = suite_named("v2_squad_thresh_0.5")["expected"]["per_question"]["v2_no_article_only"];
  EXPECT_EQ(half["exact_thresh"].get<double>(), half["exact"].get<double>());
  // The best-threshold search ignores the threshold option.
  EXPECT_EQ(at_one.best_f1, at_half.best_f1);
  EXPECT_EQ(at_one.best_f1_thresh, at_zero.best_f1_thresh);
}

TEST(SquadMetricThreshold, AbsentProbabilityCountsAsZero) {
  auto preds = predictions_of(suite_named("v2_squad"));
  for (auto& p : preds) {
    if (p.id == "v2_no_prob_field") {
      ASSERT_FALSE(p.no_answer_probability);
    }
  }
  SquadMetricOptions options;
  options.na_threshold = -0.5;  // every explicit probability, and the implicit 0.0, is above it
  const auto result = squad_metric(references_of(suite_named("v2_squad")), preds, options);
  for (const auto& q : result.questions) EXPECT_EQ(q.exact_thresh, q.has_answer ? 0.0 : 1.0) << q.id;
}

TEST(SquadMetricVersion, AutoPicksV2WhenAnyQuestionIsImpossible) {
  const std::vector<QaReference> v1_refs = {{"a", {"Huế"}, false}};
  const std::vector<QaReference> v2_refs = {{"a", {"Huế"}, false}, {"b", {}, true}};
  const std::vector<QaPrediction> preds = {{"a", "Huế", std::nullopt}, {"b", "", std::nullopt}};
  EXPECT_EQ(squad_metric(v1_refs, preds, {}).version, SquadVersion::v1);
  EXPECT_EQ(keys_of(squad_metric(v1_refs, preds, {}).to_json()),
            (std::vector<std::string>{"exact_match", "f1"}));
  EXPECT_EQ(squad_metric(v2_refs, preds, {}).version, SquadVersion::v2);
  EXPECT_EQ(squad_metric(v2_refs, preds, {}).to_json()["NoAns_total"], 1);
}

// qlora's rule, not the v2 script's: an unanswered question scores 0 and counts in total (the v2
// script would drop it from total and fail on HasAns_). Two questions, one right, one missing.
TEST(SquadMetricMissing, V2MissingPredictionScoresZeroAndCounts) {
  const std::vector<QaReference> refs = {{"a", {"Huế"}, false}, {"b", {}, true}};
  for (const auto& preds : {std::vector<QaPrediction>{{"a", "Huế", 0.0}},
                            std::vector<QaPrediction>{{"b", "", 0.0}, {"zz", "x", 0.0}}}) {
    const auto result = squad_metric(refs, preds, {});
    EXPECT_EQ(result.all.total, 2);
    EXPECT_EQ(result.all.exact, 50.0);
    EXPECT_EQ(result.best_exact, 50.0);
    EXPECT_EQ(result.missing_ids.size(), 1u);
  }
  const auto details = squad_metric(refs, {{"b", "", 0.0}, {"zz", "x", 0.0}}, {}).details_json();
  EXPECT_EQ(details["missing"], 1);
  EXPECT_EQ(details["missing_examples"], Json::array({"a"}));
  EXPECT_EQ(details["unknown_predictions"], 1);
  EXPECT_EQ(details["unknown_examples"], Json::array({"zz"}));
}

TEST(SquadMetricErrors, RejectsWhatTheScriptsCannotScore) {
  const std::vector<QaReference> refs = {{"a", {"Huế"}, false}, {"b", {}, false}};
  SquadMetricOptions v1;
  v1.version = SquadVersion::v1;
  EXPECT_CONTAINS(error_of([&] { squad_metric(refs, {{"b", "x", std::nullopt}}, v1); }), "'b'");
  EXPECT_CONTAINS(error_of([&] { squad_metric(refs, {}, v1); }), "--squad-version v2");
  EXPECT_CONTAINS(error_of([&] { squad_metric({}, {}, {}); }), "no reference questions");
  EXPECT_CONTAINS(error_of([&] { squad_metric({refs[0], refs[0]}, {}, {}); }), "duplicate reference id 'a'");
  EXPECT_CONTAINS(error_of([&] {
                    squad_metric({refs[0]}, {{"a", "x", 0.1}, {"a", "y", 0.2}}, {});
                  }),
                  "duplicate prediction id 'a'");
  SquadMetricOptions bad_lang;
  bad_lang.normalize = Normalization::mlqa;
  bad_lang.lang = "vie";
  EXPECT_CONTAINS(error_of([&] { squad_metric({refs[0]}, {}, bad_lang); }), "did you mean 'vi'");
  EXPECT_CONTAINS(error_of([] { parse_normalization("mlq"); }), "did you mean 'mlqa'");
  EXPECT_CONTAINS(error_of([] { parse_squad_version("v3"); }), "expected auto, v1 or v2");
  EXPECT_CONTAINS(error_of([&] {
                    squad_metric({refs[0]}, {{"a", "\xC3", std::nullopt}}, {});
                  }),
                  "malformed UTF-8");
}

}  // namespace
