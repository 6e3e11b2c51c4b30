// ROUGE and its tokenizers against tests/fixtures/eval/text_metrics/{rouge,porter}.json, written by
// tools/gen_text_metric_fixtures.py from rouge-score 0.1.2 and nltk 3.10.4 (the `unicode` tokenizer's
// oracle is the plain Python definition in that script).
#include <gtest/gtest.h>

#include "eval_test_util.h"
#include "qlora/eval/rouge.h"
#include "qlora/eval/text_tokenize.h"

namespace {

using qlora::Json;
using namespace qlora::eval;
using namespace qlora_eval_test;

const Json& rouge_fixture() {
  static const Json j = qlora::read_json_file(fixture("text_metrics/rouge.json"));
  return j;
}

// The port does rouge-score's float operations in its order, so values agree to the last bits; the
// 1e-12 relative margin only allows for a different libm in the fixture's Python.
void expect_score(const RougeScore& actual, const Json& expected, const std::string& where) {
  const double p = expected[0].get<double>(), r = expected[1].get<double>(), f = expected[2].get<double>();
  EXPECT_NEAR(actual.precision, p, 1e-12 * std::max(1.0, p)) << where << " precision";
  EXPECT_NEAR(actual.recall, r, 1e-12 * std::max(1.0, r)) << where << " recall";
  EXPECT_NEAR(actual.fmeasure, f, 1e-12 * std::max(1.0, f)) << where << " fmeasure";
}

void expect_scores(const RougeScores& actual, const Json& expected, const std::string& where) {
  expect_score(actual.rouge1, expected["rouge1"], where + " rouge1");
  expect_score(actual.rouge2, expected["rouge2"], where + " rouge2");
  expect_score(actual.rougeL, expected["rougeL"], where + " rougeL");
  expect_score(actual.rougeLsum, expected["rougeLsum"], where + " rougeLsum");
}

RougeOptions options_for(const std::string& key) {
  RougeOptions o;
  o.tokenizer = key == "unicode" ? RougeTokenizer::unicode : RougeTokenizer::default_ascii;
  o.use_stemmer = key == "stem";
  return o;
}

TEST(PorterStemmer, MatchesNltkPorterStemmerOnWordList) {
  const Json j = qlora::read_json_file(fixture("text_metrics/porter.json"));
  ASSERT_EQ(j["mode"], "NLTK_EXTENSIONS");  // what rouge-score's DefaultTokenizer constructs
  ASSERT_GT(j["words"].size(), 1000u);
  int mismatches = 0;
  for (const auto& pair : j["words"]) {
    const std::string word = pair[0].get<std::string>(), want = pair[1].get<std::string>();
    const std::string got = porter_stem(word);
    if (got != want && ++mismatches <= 10) ADD_FAILURE() << word << ": got " << got << ", nltk " << want;
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(RougeTokenizer, DefaultMatchesRougeScoreWithAndWithoutStemmer) {
  for (const auto& c : rouge_fixture()["tokens"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(rouge_default_tokenize(text, false), c["default"].get<std::vector<std::string>>()) << text;
    EXPECT_EQ(rouge_default_tokenize(text, true), c["default_stem"].get<std::vector<std::string>>()) << text;
  }
}

TEST(RougeTokenizer, UnicodeMatchesOracleAndNeverStems) {
  RougeOptions o;
  o.tokenizer = RougeTokenizer::unicode;
  o.use_stemmer = true;  // ignored by the unicode tokenizer
  for (const auto& c : rouge_fixture()["tokens"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(rouge_tokenize(text, o), c["unicode"].get<std::vector<std::string>>()) << text;
  }
}

TEST(RougeTokenizer, VietnameseDefaultBreaksWordsUnicodeKeepsThem) {
  EXPECT_EQ(rouge_default_tokenize("Tiếng Việt", true), (std::vector<std::string>{"ti", "ng", "vi", "t"}));
  EXPECT_EQ(rouge_unicode_tokenize("Tiếng Việt"), (std::vector<std::string>{"tiếng", "việt"}));
}

TEST(Rouge, PerExampleScoresMatchRougeScorer) {
  int checked = 0;
  for (const auto& c : rouge_fixture()["cases"]) {
    const std::string ref = c["reference"].get<std::string>(), pred = c["prediction"].get<std::string>();
    for (const auto& [key, expected] : c["scores"].items()) {
      expect_scores(rouge_score(ref, pred, options_for(key)), expected,
                    key + " [" + ref + "] vs [" + pred + "]");
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
}

TEST(Rouge, ScoreMultiKeepsTheBestReferencePerType) {
  for (const auto& c : rouge_fixture()["multi_reference"]) {
    const auto refs = c["references"].get<std::vector<std::string>>();
    expect_scores(rouge_score_multi(refs, c["prediction"].get<std::string>(), options_for("stem")),
                  c["scores"], "multi " + c["prediction"].get<std::string>());
  }
}

TEST(Rouge, CorpusIsThePlainMeanOfExamples) {
  std::vector<std::string> preds;
  std::vector<std::vector<std::string>> refs;
  double f_sum[4] = {0, 0, 0, 0}, p_sum = 0, r_sum = 0;
  const char* types[] = {"rouge1", "rouge2", "rougeL", "rougeLsum"};
  for (const auto& c : rouge_fixture()["cases"]) {
    if (!c["scores"].contains("nostem")) continue;
    preds.push_back(c["prediction"].get<std::string>());
    refs.push_back({c["reference"].get<std::string>()});
    for (int t = 0; t < 4; ++t) f_sum[t] += c["scores"]["nostem"][types[t]][2].get<double>();
    p_sum += c["scores"]["nostem"]["rouge2"][0].get<double>();
    r_sum += c["scores"]["nostem"]["rougeL"][1].get<double>();
  }
  const double n = static_cast<double>(preds.size());
  const auto result = rouge_corpus(preds, refs, options_for("nostem"));
  ASSERT_EQ(result.examples.size(), preds.size());
  const Json j = result.to_json(options_for("nostem"));
  for (int t = 0; t < 4; ++t) EXPECT_NEAR(j[types[t]].get<double>(), 100 * f_sum[t] / n, 1e-10) << types[t];
  EXPECT_NEAR(j["rouge2_precision"].get<double>(), 100 * p_sum / n, 1e-10);
  EXPECT_NEAR(j["rougeL_recall"].get<double>(), 100 * r_sum / n, 1e-10);
  EXPECT_EQ(j["use_stemmer"], false);
  EXPECT_EQ(j["tokenizer"], "default");
  EXPECT_EQ(j["scale"], 100);  // percentages, where rouge-score gives fractions
}

TEST(Rouge, InputErrorsAreClear) {
  const RougeOptions o;
  EXPECT_CONTAINS(error_of([&] { rouge_corpus({}, {}, o); }), "at least one prediction");
  EXPECT_CONTAINS(error_of([&] {
                    rouge_corpus({"a", "b"}, {{"a"}}, o);
                  }),
                  "2 predictions but 1 reference sets");
  EXPECT_CONTAINS(error_of([&] { rouge_corpus({"a"}, {{}}, o); }), "example 1 has no reference");
  EXPECT_CONTAINS(error_of([] { parse_rouge_tokenizer("ascii"); }), "unknown ROUGE tokenizer 'ascii'");
  EXPECT_CONTAINS(error_of([&] { rouge_score("ok", "\xff", o); }), "UTF-8");
}

}  // namespace
