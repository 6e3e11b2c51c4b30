// BLEU against tests/fixtures/eval/text_metrics/bleu.json, written by tools/gen_text_metric_fixtures.py
// from sacrebleu 2.6.0: the 13a tokenizer, sentence_bleu per segment, and corpus_score with its
// defaults and other smoothing/casing/effective-order settings, multi-reference included.
#include <gtest/gtest.h>

#include "eval_test_util.h"
#include "qlora/eval/bleu.h"
#include "qlora/eval/text_tokenize.h"

namespace {

using qlora::Json;
using namespace qlora::eval;
using namespace qlora_eval_test;

const Json& bleu_fixture() {
  static const Json j = qlora::read_json_file(fixture("text_metrics/bleu.json"));
  return j;
}

// Same integer statistics and the same float operations in sacrebleu's order: agreement to the last
// bits is expected; 1e-12 relative allows only for a different libm exp/log in the fixture's Python.
void expect_bleu(const BleuScore& actual, const Json& expected, const std::string& where) {
  const double score = expected["score"].get<double>(), bp = expected["bp"].get<double>();
  EXPECT_NEAR(actual.score, score, 1e-12 * std::max(1.0, score)) << where;
  EXPECT_NEAR(actual.bp, bp, 1e-12) << where;
  EXPECT_EQ(actual.sys_len, expected["sys_len"].get<int64_t>()) << where;
  EXPECT_EQ(actual.ref_len, expected["ref_len"].get<int64_t>()) << where;
  const auto precisions = expected["precisions"].get<std::vector<double>>();
  ASSERT_EQ(actual.precisions.size(), precisions.size()) << where;
  for (size_t n = 0; n < precisions.size(); ++n)
    EXPECT_NEAR(actual.precisions[n], precisions[n], 1e-12 * std::max(1.0, precisions[n]))
        << where << " p" << n + 1;
}

TEST(BleuTokenizers, ThirteenAAndIntlMatchSacrebleu) {
  for (const auto& c : bleu_fixture()["tokens"]) {
    const std::string text = c["text"].get<std::string>();
    EXPECT_EQ(tokenize_13a(python_rstrip(text)), c["tok_13a"].get<std::string>()) << text;
    EXPECT_EQ(tokenize_intl(python_rstrip(text)), c["tok_intl"].get<std::string>()) << text;
  }
}

TEST(Bleu, SentenceBleuMatchesSacrebleu) {
  for (const auto& c : bleu_fixture()["sentence"]) {
    const auto refs = c["references"].get<std::vector<std::string>>();
    const std::string hyp = c["hypothesis"].get<std::string>();
    const auto score = bleu_sentence(hyp, refs);
    expect_bleu(score, c["bleu"], hyp);
    // sacrebleu's counts after 'exp' smoothing are the raw counts.
    EXPECT_EQ(score.counts, c["bleu"]["counts"].get<std::vector<int64_t>>()) << hyp;
    EXPECT_EQ(score.totals, c["bleu"]["totals"].get<std::vector<int64_t>>()) << hyp;
  }
}

TEST(Bleu, CorpusBleuMatchesSacrebleuWithItsSignature) {
  int index = 0;
  for (const auto& c : bleu_fixture()["corpus"]) {
    BleuOptions options;
    const Json& o = c["options"];
    options.smooth_method = o.value("smooth_method", "exp");
    options.lowercase = o.value("lowercase", false);
    options.effective_order = o.value("effective_order", false);
    options.tokenize = o.value("tokenize", "13a");
    const auto score = bleu_corpus(c["hypotheses"].get<std::vector<std::string>>(),
                                   c["references"].get<std::vector<std::vector<std::string>>>(), options);
    const std::string where = "corpus " + std::to_string(index++) + " " + o.dump();
    expect_bleu(score, c["bleu"], where);
    if (options.smooth_method != "add-k") {  // sacrebleu reports add-k counts after adding k
      EXPECT_EQ(score.counts, c["bleu"]["counts"].get<std::vector<int64_t>>()) << where;
      EXPECT_EQ(score.totals, c["bleu"]["totals"].get<std::vector<int64_t>>()) << where;
    }
    EXPECT_EQ(score.signature, c["signature"].get<std::string>()) << where;
  }
}

TEST(Bleu, DefaultSignatureIsSacrebleus) {
  EXPECT_EQ(bleu_corpus({"a b"}, {{"a b"}}).signature,
            "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
  EXPECT_EQ(bleu_corpus({"a b", "c"}, {{"a b"}, {"c", "d"}}).signature.substr(0, 10), "nrefs:var|");
}

TEST(Bleu, InputErrorsAreClear) {
  EXPECT_CONTAINS(error_of([] { bleu_corpus({}, {}); }), "at least one hypothesis");
  EXPECT_CONTAINS(error_of([] { bleu_corpus({"a"}, {{"a"}, {"b"}}); }), "1 hypotheses but 2 reference sets");
  EXPECT_CONTAINS(error_of([] { bleu_corpus({"a"}, {{}}); }), "segment 1 has no reference");
  BleuOptions bad;
  bad.tokenize = "zh";
  EXPECT_CONTAINS(error_of([&] { bleu_corpus({"a"}, {{"a"}}, bad); }), "'zh' is not supported");
  bad = {};
  bad.smooth_method = "laplace";
  EXPECT_CONTAINS(error_of([&] { bleu_corpus({"a"}, {{"a"}}, bad); }), "unknown BLEU smoothing 'laplace'");
}

}  // namespace
