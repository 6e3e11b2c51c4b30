// chrF / chrF++ against tests/fixtures/eval/text_metrics/chrf.json, written by
// tools/gen_text_metric_fixtures.py from sacrebleu 2.6.0's CHRF: sentence_score (word order 0 and 2)
// and corpus_score under several option sets, multi-reference and Vietnamese included.
#include <gtest/gtest.h>

#include "eval_test_util.h"
#include "qlora/eval/chrf.h"

namespace {

using qlora::Json;
using namespace qlora::eval;
using namespace qlora_eval_test;

const Json& chrf_fixture() {
  static const Json j = qlora::read_json_file(fixture("text_metrics/chrf.json"));
  return j;
}

ChrfOptions options_of(const Json& o) {
  ChrfOptions options;
  options.char_order = o.value("char_order", 6);
  options.word_order = o.value("word_order", 0);
  options.beta = o.value("beta", 2);
  options.lowercase = o.value("lowercase", false);
  options.whitespace = o.value("whitespace", false);
  options.eps_smoothing = o.value("eps_smoothing", false);
  return options;
}

// Same integer statistics, same float operations in sacrebleu's order: 1e-12 relative is a margin
// for nothing but printing/parsing round trips of the fixture's doubles (which are exact).
constexpr double kRelTol = 1e-12;

TEST(Chrf, SentenceScoresMatchSacrebleu) {
  int checked = 0;
  for (const auto& c : chrf_fixture()["sentence"]) {
    ChrfOptions options;
    options.word_order = c["word_order"].get<int>();
    const double want = c["score"].get<double>();
    const std::string hyp = c["hypothesis"].get<std::string>();
    const double got = chrf_sentence(hyp, c["references"].get<std::vector<std::string>>(), options).score;
    EXPECT_NEAR(got, want, kRelTol * std::max(1.0, want))
        << "word_order " << options.word_order << ": " << hyp;
    ++checked;
  }
  EXPECT_GT(checked, 50);
}

TEST(Chrf, CorpusScoresNamesAndSignaturesMatchSacrebleu) {
  for (const auto& c : chrf_fixture()["corpus"]) {
    const auto options = options_of(c["options"]);
    const auto score = chrf_corpus(c["hypotheses"].get<std::vector<std::string>>(),
                                   c["references"].get<std::vector<std::vector<std::string>>>(), options);
    const double want = c["score"].get<double>();
    EXPECT_NEAR(score.score, want, kRelTol * std::max(1.0, want)) << c["options"].dump();
    EXPECT_EQ(score.name, c["name"].get<std::string>());
    EXPECT_EQ(score.signature, c["signature"].get<std::string>());
  }
}

TEST(Chrf, InputErrorsAreClear) {
  EXPECT_CONTAINS(error_of([] { chrf_corpus({}, {}); }), "at least one hypothesis");
  EXPECT_CONTAINS(error_of([] { chrf_corpus({"a", "b"}, {{"a"}}); }), "2 hypotheses but 1 reference sets");
  EXPECT_CONTAINS(error_of([] { chrf_corpus({"a"}, {{}}); }), "segment 1 has no reference");
  ChrfOptions none;
  none.char_order = 0;
  EXPECT_CONTAINS(error_of([&] { chrf_corpus({"a"}, {{"a"}}, none); }), "char_order + word_order >= 1");
}

}  // namespace
