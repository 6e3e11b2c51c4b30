// prepare_train_features / prepare_validation_features against run_qa.py's, feature by feature.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>

#include "error_of.h"
#include "qa/qa_test_util.h"
#include "qlora/core/error.h"
#include "qlora/core/unicode.h"

namespace qlora::qa {
namespace {

using test::fixture_examples;
using test::kFeatureFiles;
using test::load_case;
using test::row;
using test::xlmr_tokenizer;

std::vector<int64_t> ints(const Json& j) { return j.get<std::vector<int64_t>>(); }

class FeatureFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(FeatureFixture, TrainFeaturesEqualRunQa) {
  const Json fixture = load_case(GetParam());
  const QaTrainFeatures got =
      prepare_train_features(xlmr_tokenizer(), fixture_examples(), test::case_options(fixture));
  const Json& want = fixture["features"];
  const int64_t T = got.inputs.seq_len;
  ASSERT_EQ(got.inputs.size(), static_cast<int64_t>(want.size()));
  ASSERT_EQ(got.inputs.input_ids.size(), want.size() * T);
  ASSERT_EQ(got.inputs.attention_mask.size(), want.size() * T);
  ASSERT_EQ(got.inputs.token_type_ids.size(), want.size() * T);
  for (size_t f = 0; f < want.size(); ++f) {
    SCOPED_TRACE(GetParam() + " feature " + std::to_string(f) + " (" +
                 want[f]["example_id"].get<std::string>() + ")");
    EXPECT_EQ(row(got.inputs.input_ids, T, f), ints(want[f]["input_ids"]));
    EXPECT_EQ(row(got.inputs.attention_mask, T, f), ints(want[f]["attention_mask"]));
    EXPECT_EQ(row(got.inputs.token_type_ids, T, f), ints(want[f]["token_type_ids"]));
    EXPECT_EQ(got.inputs.example_index[f], want[f]["example_index"].get<int64_t>());
    EXPECT_EQ(got.start_positions[f], want[f]["start_position"].get<int64_t>());
    EXPECT_EQ(got.end_positions[f], want[f]["end_position"].get<int64_t>());
    EXPECT_EQ(got.inputs.cls_index[f], 0);  // XLM-R: <s> first
  }
}

TEST_P(FeatureFixture, ValidationFeaturesEqualRunQa) {
  const Json fixture = load_case(GetParam());
  const QaEvalFeatures got =
      prepare_validation_features(xlmr_tokenizer(), fixture_examples(), test::case_options(fixture));
  const Json& want = fixture["features"];
  const int64_t T = got.inputs.seq_len;
  ASSERT_EQ(got.example_ids.size(), want.size());
  ASSERT_EQ(got.offsets.size(), want.size());
  int64_t context_tokens = 0;
  for (size_t f = 0; f < want.size(); ++f) {
    SCOPED_TRACE(GetParam() + " feature " + std::to_string(f));
    EXPECT_EQ(got.example_ids[f], want[f]["example_id"].get<std::string>());
    EXPECT_EQ(row(got.inputs.input_ids, T, f), ints(want[f]["input_ids"]));
    ASSERT_EQ(got.offsets[f].size(), want[f]["offset_mapping"].size());
    for (size_t t = 0; t < got.offsets[f].size(); ++t) {
      const Json& o = want[f]["offset_mapping"][t];
      if (o.is_null()) {
        EXPECT_FALSE(got.offsets[f][t].has_value()) << "token " << t << " should have no offset";
      } else {
        ++context_tokens;
        ASSERT_TRUE(got.offsets[f][t].has_value()) << "token " << t;
        EXPECT_EQ(*got.offsets[f][t], (CharSpan{o[0].get<int64_t>(), o[1].get<int64_t>()})) << "token " << t;
      }
    }
  }
  EXPECT_GT(context_tokens, 0);
}

// The fixtures must exercise what the tests above claim to check; a regenerated fixture that lost a
// case fails here instead of passing vacuously.
TEST_P(FeatureFixture, FixtureCoversWindowsLabelsAndQuirk) {
  const Json fixture = load_case(GetParam());
  const int64_t T = fixture["config"]["max_seq_length"].get<int64_t>();
  std::map<int64_t, int> windows;
  int cls_labels = 0, answer_labels = 0, past_context = 0;
  for (const Json& f : fixture["features"]) {
    ++windows[f["example_index"].get<int64_t>()];
    const int64_t start = f["start_position"].get<int64_t>();
    (start == 0 ? cls_labels : answer_labels)++;
    if (start == T - 1) ++past_context;
  }
  int most = 0;
  for (const auto& [example, n] : windows) most = std::max(most, n);
  EXPECT_GE(most, 5);
  EXPECT_GT(cls_labels, 0);
  EXPECT_GT(answer_labels, 0);
  EXPECT_EQ(past_context, 1) << "vi-answer-last-token: HF's start walk runs into the padding";
}

INSTANTIATE_TEST_SUITE_P(RunQa, FeatureFixture, ::testing::ValuesIn(kFeatureFiles),
                         [](const auto& info) { return info.param.substr(9, info.param.size() - 14); });

TEST(QaFeatures, ConsecutiveWindowsShareDocStrideContextTokens) {
  const QaExample& longest = fixture_examples()[4];  // 322 context tokens
  for (int64_t stride : {0, 7, 16, 30}) {
    const QaEvalFeatures f = prepare_validation_features(xlmr_tokenizer(), {longest}, {64, stride});
    ASSERT_GE(f.inputs.size(), 2);
    std::vector<std::vector<CharSpan>> context(f.inputs.size());
    for (int64_t i = 0; i < f.inputs.size(); ++i) {
      for (const auto& o : f.offsets[i]) {
        if (o) context[i].push_back(*o);
      }
    }
    for (size_t i = 0; i + 1 < context.size(); ++i) {
      const auto& a = context[i];
      const auto& b = context[i + 1];
      ASSERT_GE(a.size(), static_cast<size_t>(stride));
      EXPECT_EQ(std::vector<CharSpan>(a.end() - stride, a.end()),
                std::vector<CharSpan>(b.begin(), b.begin() + stride))
          << "stride " << stride << " window " << i;
    }
    // The last window reaches the end of the context.
    EXPECT_EQ(context.back().back().second, static_cast<int64_t>(utf8_length(longest.context)));
  }
}

TEST(QaFeatures, ShortContextGivesOneWindow) {
  const QaExample ex{"short", "Yes.", "Is it?", {{"Yes", 0}}, false};
  const QaTrainFeatures f = prepare_train_features(xlmr_tokenizer(), {ex}, {64, 16});
  ASSERT_EQ(f.inputs.size(), 1);
  EXPECT_EQ(f.inputs.input_ids[63], xlmr_tokenizer().special_ids().pad);
  EXPECT_EQ(f.inputs.attention_mask[63], 0);
  EXPECT_NE(f.start_positions[0], 0);
}

using qlora_test::error_of;

TEST(QaFeatures, SettingsHfRejectsAreErrorsNamingTheRecord) {
  const Json errors = test::load_case("errors.json")["errors"];
  ASSERT_EQ(errors.size(), 3u);
  for (const Json& c : errors) {
    SCOPED_TRACE(c["name"].get<std::string>() + ": HF says " + c["hf_error"].get<std::string>());
    const QaExample ex{"err-1", c["context"].get<std::string>(), c["question"].get<std::string>(), {}, true};
    const QaFeatureOptions options{c["max_seq_length"].get<int64_t>(), c["doc_stride"].get<int64_t>()};
    const std::string train = error_of([&] { prepare_train_features(xlmr_tokenizer(), {ex}, options); });
    const std::string eval = error_of([&] { prepare_validation_features(xlmr_tokenizer(), {ex}, options); });
    ASSERT_FALSE(train.empty()) << "no Error";
    EXPECT_EQ(train, eval);
    const std::string name = c["name"].get<std::string>();
    if (name == "question_too_long") {
      EXPECT_NE(train.find("record \"err-1\""), std::string::npos) << train;
      EXPECT_NE(train.find("question has 17 tokens"), std::string::npos) << train;
    } else if (name == "stride_not_below_window") {
      EXPECT_NE(train.find("record \"err-1\""), std::string::npos) << train;
      EXPECT_NE(train.find("context window of 8 tokens"), std::string::npos) << train;
    } else {
      EXPECT_NE(train.find("effective max length 14"), std::string::npos) << train;
    }
  }
  // One token more than the too-long case leaves room for one context token per window.
  const Json& c = errors[0];
  const QaExample ex{"ok", c["context"].get<std::string>(), c["question"].get<std::string>(), {}, true};
  EXPECT_GT(prepare_validation_features(xlmr_tokenizer(), {ex}, {c["max_seq_length"].get<int64_t>() + 1, 0})
                .inputs.size(),
            10);
}

TEST(QaFeatures, PythonLstrip) {
  EXPECT_EQ(python_lstrip(" \u00a0\t\n\u3000\u2003Ai?"), "Ai?");
  EXPECT_EQ(python_lstrip("\x1c\x1f\u0085x "), "x ");
  EXPECT_EQ(python_lstrip("\u200bx"), "\u200bx");  // ZERO WIDTH SPACE is not str.isspace()
  EXPECT_EQ(python_lstrip("   "), "");
  EXPECT_EQ(python_lstrip(""), "");
}

class TempJsonl {
 public:
  explicit TempJsonl(const std::string& text)
      : path_(::testing::TempDir() + "qa_records_" + std::to_string(++count_) + ".jsonl") {
    std::ofstream(path_) << text;
  }
  ~TempJsonl() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  static inline int count_ = 0;
  std::string path_;
};

TEST(QaExamples, ReadsMrcRecords) {
  const std::vector<QaExample>& ex = fixture_examples();
  ASSERT_EQ(ex.size(), 14u);
  EXPECT_EQ(ex[0].id, "A?R00000T636816881325596102");
  EXPECT_EQ(ex[0].answers[0].answer_start, 93);
  EXPECT_EQ(ex[7].answers.size(), 3u);  // test_wiki: three references
  const auto impossible =
      std::find_if(ex.begin(), ex.end(), [](const QaExample& e) { return e.is_impossible; });
  ASSERT_NE(impossible, ex.end());
  EXPECT_TRUE(impossible->answers.empty());
}

TEST(QaExamples, BadRecordsAreErrorsNamingFileAndLine) {
  const std::string good =
      R"({"id":"a","context":"Hà Nội","question":"?","answers":[{"text":"Nội","answer_start":3}]})";
  EXPECT_EQ(read_qa_examples(TempJsonl(good + "\n").path()).size(), 1u);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"id":"b","context":"Hà Nội","question":"?","answers":[{"text":"Nội","answer_start":2}]})",
       "does not point at its text"},
      {R"({"id":"b","context":"Hà Nội","question":"?","answers":[{"text":"","answer_start":0}]})",
       "text is empty"},
      {R"({"id":"b","context":"Hà Nội","question":"?","answers":[{"text":"Nội","answer_start":"3"}]})",
       "answer_start: expected an integer"},
      {R"({"id":"b","context":"Hà Nội","answers":[]})", "question: expected a string"},
      {R"({"id":"a","context":"Hà Nội","question":"?","answers":[]})", "repeated id \"a\""},
      {R"({"id":"b","context":"x","question":"?","answers":[],"is_impossible":"yes"})", "is_impossible"},
  };
  for (const auto& [line, message] : cases) {
    TempJsonl file(good + "\n" + line + "\n");
    const std::string error = error_of([&] { read_qa_examples(file.path()); });
    EXPECT_NE(error.find(file.path() + ":2:"), std::string::npos) << error;
    EXPECT_NE(error.find(message), std::string::npos) << error;
  }
}

}  // namespace
}  // namespace qlora::qa
