// postprocess_qa_predictions against utils_qa.py on the fixtures' logits, v1 and v2.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "error_of.h"
#include "qa/qa_test_util.h"
#include "qlora/core/error.h"
#include "qlora/qa/postprocess.h"

namespace qlora::qa {
namespace {

using test::fixture_examples;
using test::kFeatureFiles;
using test::load_case;
using test::xlmr_tokenizer;

QaPostprocessOptions options_of(const Json& fixture, bool v2) {
  QaPostprocessOptions options;
  options.n_best_size = fixture["config"]["n_best_size"].get<int64_t>();
  options.max_answer_length = fixture["config"]["max_answer_length"].get<int64_t>();
  options.null_score_diff_threshold = fixture["config"]["null_threshold"].get<double>();
  options.version_2_with_negative = v2;
  return options;
}

struct Case {
  std::string file;
  bool v2;
};

class PostprocessFixture : public ::testing::TestWithParam<Case> {};

// Texts, logits, scores and the null diff are float32 values both sides compute with the same
// single float additions, so they must be equal. Probabilities: numpy's softmax runs in float32
// (exp to ~1 ulp, a sum of up to 21 terms), qlora's in double; both are within ~1e-7 of the exact
// value, so 1e-6 bounds their difference.
TEST_P(PostprocessFixture, PredictionsEqualUtilsQa) {
  const Case c = GetParam();
  const Json fixture = load_case(c.file);
  const QaEvalFeatures features =
      prepare_validation_features(xlmr_tokenizer(), fixture_examples(), test::case_options(fixture));
  const std::vector<QaAnswerPrediction> got =
      postprocess_qa_predictions(fixture_examples(), features, test::logits(fixture, "start_logits"),
                                 test::logits(fixture, "end_logits"), options_of(fixture, c.v2));
  const Json& want = fixture[c.v2 ? "v2" : "v1"];
  ASSERT_EQ(got.size(), want.size());
  int null_answers = 0, empty_fallbacks = 0;
  size_t entries = 0;
  for (size_t k = 0; k < got.size(); ++k) {
    SCOPED_TRACE(c.file + (c.v2 ? " v2 " : " v1 ") + want[k]["id"].get<std::string>());
    EXPECT_EQ(got[k].id, want[k]["id"].get<std::string>());
    EXPECT_EQ(got[k].prediction_text, want[k]["prediction_text"].get<std::string>());
    null_answers += got[k].prediction_text.empty();
    if (c.v2) {
      ASSERT_TRUE(got[k].null_score_diff.has_value());
      EXPECT_EQ(*got[k].null_score_diff, static_cast<float>(want[k]["null_score_diff"].get<double>()));
    } else {
      EXPECT_FALSE(got[k].null_score_diff.has_value());
    }
    const Json& nbest = want[k]["nbest"];
    ASSERT_EQ(got[k].nbest.size(), nbest.size());
    empty_fallbacks += nbest[0]["text"] == "empty";
    for (size_t i = 0; i < nbest.size(); ++i) {
      SCOPED_TRACE("n-best " + std::to_string(i));
      const QaNbestEntry& e = got[k].nbest[i];
      EXPECT_EQ(e.text, nbest[i]["text"].get<std::string>());
      EXPECT_EQ(e.start_logit, static_cast<float>(nbest[i]["start_logit"].get<double>()));
      EXPECT_EQ(e.end_logit, static_cast<float>(nbest[i]["end_logit"].get<double>()));
      EXPECT_EQ(e.score, static_cast<float>(nbest[i]["score"].get<double>()));
      EXPECT_NEAR(e.probability, nbest[i]["probability"].get<double>(), 1e-6);
      ++entries;
    }
  }
  EXPECT_GT(entries, got.size());  // more than one candidate per example on average
  EXPECT_GE(empty_fallbacks, 1) << "en-2 gets logits with no valid candidate";
  if (c.v2) {
    EXPECT_GT(null_answers, 0);
    EXPECT_LT(null_answers, static_cast<int>(got.size()));
  } else {
    EXPECT_EQ(null_answers, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(UtilsQa, PostprocessFixture,
                         ::testing::Values(Case{kFeatureFiles[0], false}, Case{kFeatureFiles[0], true},
                                           Case{kFeatureFiles[1], false}, Case{kFeatureFiles[1], true}),
                         [](const auto& info) {
                           return info.param.file.substr(9, info.param.file.size() - 14) +
                                  (info.param.v2 ? "_v2" : "_v1");
                         });

// A hand-made example: one feature of 6 tokens, context tokens 2..4 over "Hà Nội đẹp".
struct Tiny {
  std::vector<QaExample> examples{{"t", "Hà Nội đẹp", "?", {}, false}};
  QaEvalFeatures features;
  Tiny() {
    features.inputs.seq_len = 6;
    features.example_ids = {"t"};
    features.offsets = {
        {std::nullopt, std::nullopt, CharSpan{0, 2}, CharSpan{3, 6}, CharSpan{7, 10}, std::nullopt}};
  }
};

TEST(QaPostprocess, NullDiffEqualToThresholdKeepsTheAnswer) {
  Tiny t;
  // best span "Nội" (3 + 2 = 5); null = 1 + 1 = 2; diff = 2 - 5 = -3.
  const std::vector<std::vector<float>> start{{1, 0, 0, 3, 0, -1}}, end{{1, 0, 0, 2, -2, -1}};
  QaPostprocessOptions options;
  options.version_2_with_negative = true;
  options.null_score_diff_threshold = -3.0;
  auto p = postprocess_qa_predictions(t.examples, t.features, start, end, options);
  EXPECT_EQ(*p[0].null_score_diff, -3.0f);
  EXPECT_EQ(p[0].prediction_text, "Nội");  // diff > threshold is false
  options.null_score_diff_threshold = -3.5;
  p = postprocess_qa_predictions(t.examples, t.features, start, end, options);
  EXPECT_EQ(p[0].prediction_text, "");
  EXPECT_EQ(prediction_to_json(p[0], true).dump(),
            R"({"id":"t","prediction_text":"","no_answer_probability":0.0})");
  EXPECT_EQ(prediction_to_json(p[0], false).dump(), R"({"id":"t","prediction_text":""})");
  EXPECT_EQ(nbest_to_json(p[0])["nbest"][0]["text"], "Nội");
}

TEST(QaPostprocess, MaxAnswerLengthAndEqualScoresKeepCandidateOrder) {
  Tiny t;
  // start order: 2 (5), 3 (4); end order: 4 (5), 3 (4). Pairs visited: (2,4) 10, (2,3) 9, (3,4) 9, (3,3) 8.
  const std::vector<std::vector<float>> start{{-9, -9, 5, 4, 0, -9}}, end{{-9, -9, 0, 4, 5, -9}};
  QaPostprocessOptions options;
  auto p = postprocess_qa_predictions(t.examples, t.features, start, end, options);
  ASSERT_EQ(p[0].nbest.size(), 6u);
  EXPECT_EQ(p[0].nbest[0].text, "Hà Nội đẹp");
  EXPECT_EQ(p[0].nbest[1].text, "Hà Nội");  // score 9, visited before (3,4)
  EXPECT_EQ(p[0].nbest[2].text, "Nội đẹp");
  options.max_answer_length = 1;
  options.n_best_size = 2;
  p = postprocess_qa_predictions(t.examples, t.features, start, end, options);
  ASSERT_EQ(p[0].nbest.size(), 1u);  // only (3,3): start 2 / end 4 are the top-2 but too long
  EXPECT_EQ(p[0].nbest[0].text, "Nội");
  EXPECT_DOUBLE_EQ(p[0].nbest[0].probability, 1.0);
}

using qlora_test::error_of;

TEST(QaPostprocess, BadInputsAreErrors) {
  Tiny t;
  const std::vector<std::vector<float>> ok{{0, 1, 2, 3, 4, 5}};
  const QaPostprocessOptions options;
  EXPECT_NE(error_of([&] {
              postprocess_qa_predictions(t.examples, t.features, {}, {}, options);
            }).find("0 start and 0 end logit rows for 1 features"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              postprocess_qa_predictions(t.examples, t.features, {{0, 1}}, ok, options);
            }).find("start logits have length 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              postprocess_qa_predictions(t.examples, t.features, ok, {{0, 1, 2, NAN, 4, 5}}, options);
            }).find("NaN end logit"),
            std::string::npos);
  std::vector<QaExample> twice = {t.examples[0], t.examples[0]};
  EXPECT_NE(error_of([&] {
              postprocess_qa_predictions(twice, t.features, ok, ok, options);
            }).find("repeated example id \"t\""),
            std::string::npos);
  std::vector<QaExample> other = {t.examples[0], {"u", "x", "?", {}, false}};
  EXPECT_NE(error_of([&] {
              postprocess_qa_predictions(other, t.features, ok, ok, options);
            }).find("\"u\" has no features"),
            std::string::npos);
  QaEvalFeatures unknown = t.features;
  unknown.example_ids = {"zz"};
  EXPECT_NE(error_of([&] {
              postprocess_qa_predictions(t.examples, unknown, ok, ok, options);
            }).find("unknown example id \"zz\""),
            std::string::npos);
  QaPostprocessOptions zero;
  zero.n_best_size = 0;
  EXPECT_NE(
      error_of([&] { postprocess_qa_predictions(t.examples, t.features, ok, ok, zero); }).find("n_best_size"),
      std::string::npos);
}

}  // namespace
}  // namespace qlora::qa
