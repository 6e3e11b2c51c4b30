// Prediction and reference readers: the good fixture files score like the v2 suite they were written
// from, and every bad file (problem on line 3) gives an Error naming FILE:3.
#include <gtest/gtest.h>

#include <fstream>

#include "eval_test_util.h"
#include "qlora/eval/qa_files.h"

namespace {

using qlora::Json;
using namespace qlora::eval;
using namespace qlora_eval_test;

TEST(QaFiles, GoodFilesScoreLikeTheOfficialV2Suite) {
  const auto refs = read_mrc_references(fixture("v2_references.jsonl"));
  const auto preds = read_qa_predictions(fixture("v2_predictions.jsonl"));
  ASSERT_EQ(refs.size(), 15u);
  ASSERT_EQ(preds.size(), 16u);
  EXPECT_TRUE(refs[4].is_impossible);
  EXPECT_TRUE(refs[4].answers.empty());
  EXPECT_EQ(refs[8].answers, (std::vector<std::string>{"the", "Mekong"}));
  EXPECT_EQ(preds[0].no_answer_probability, 0.1);
  const Json* expected = nullptr;
  for (const auto& suite : squad_cases()["suites"]) {
    if (suite["name"] == "v2_squad") expected = &suite["expected"]["aggregate"];
  }
  ASSERT_NE(expected, nullptr);
  const Json actual = squad_metric(refs, preds, {}).to_json();  // auto: v2, threshold 1.0
  for (const auto& item : expected->items()) {
    EXPECT_TRUE(close_enough(actual[item.key()].get<double>(), item.value().get<double>())) << item.key();
  }
}

struct BadFile {
  const char* name;
  const char* message;
};

TEST(QaFiles, BadReferenceLinesNameFileAndLine) {
  const BadFile cases[] = {
      {"bad_ref_malformed.jsonl", "malformed JSON"},
      {"bad_ref_no_id.jsonl", "missing field 'id'"},
      {"bad_ref_id_type.jsonl", "field 'id' must be a string, got number"},
      {"bad_ref_no_answers.jsonl", "missing field 'answers'"},
      {"bad_ref_answer_text_type.jsonl", "answers[0].text must be a string"},
      {"bad_ref_impossible_type.jsonl", "'is_impossible' must be true or false, got string"},
      {"bad_ref_impossible_with_answers.jsonl", "is_impossible but has answers"},
      {"bad_ref_duplicate.jsonl", "duplicate id 'q0' (first on line 1)"},
  };
  for (const auto& c : cases) {
    const std::string path = fixture(c.name);
    const std::string message = error_of([&] { read_mrc_references(path); });
    EXPECT_CONTAINS(message, path + ":3: ");
    EXPECT_CONTAINS(message, c.message);
  }
}

TEST(QaFiles, BadPredictionLinesNameFileAndLine) {
  const BadFile cases[] = {
      {"bad_pred_malformed.jsonl", "expected a JSON object, got array"},
      {"bad_pred_no_text.jsonl", "missing field 'prediction_text'"},
      {"bad_pred_text_type.jsonl", "field 'prediction_text' must be a string, got null"},
      {"bad_pred_prob_type.jsonl", "'no_answer_probability' must be a number, got string"},
      {"bad_pred_duplicate.jsonl", "duplicate id 'q0' (first on line 1)"},
      {"bad_pred_typo.jsonl", "(is 'predicton_text' a typo?)"},
  };
  for (const auto& c : cases) {
    const std::string path = fixture(c.name);
    const std::string message = error_of([&] { read_qa_predictions(path); });
    EXPECT_CONTAINS(message, path + ":3: ");
    EXPECT_CONTAINS(message, c.message);
  }
}

TEST(QaFiles, ReferencesMayNotBeEmptyButPredictionsMay) {
  // The bad prediction files read as references fail on line 1 (no "answers"); an empty file of
  // references is an error of its own.
  EXPECT_CONTAINS(error_of([] { read_mrc_references(fixture("bad_pred_typo.jsonl")); }),
                  ":1: missing field 'answers'");
  EXPECT_CONTAINS(error_of([] { read_mrc_references("/dev/null"); }), "/dev/null: no reference questions");
  EXPECT_TRUE(read_qa_predictions("/dev/null").empty());
  EXPECT_CONTAINS(error_of([] { read_qa_predictions(fixture("no_such_file.jsonl")); }), "cannot open");
}

}  // namespace

namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

// datasets' squad layout (answers = {"text": [...], "answer_start": [...]}) reads as the MRC layout does.
TEST(QaFiles, HfDatasetsAnswersLayoutIsAccepted) {
  const auto refs = read_mrc_references(write_temp(
      "hf_refs.jsonl",
      "{\"id\": \"a\", \"answers\": {\"text\": [\"Hà Nội\", \"thủ đô Hà Nội\"], \"answer_start\": [0, 5]}}\n"
      "{\"id\": \"b\", \"answers\": {\"text\": [], \"answer_start\": []}}\n"));
  ASSERT_EQ(refs.size(), 2u);
  EXPECT_EQ(refs[0].answers, (std::vector<std::string>{"Hà Nội", "thủ đô Hà Nội"}));
  EXPECT_TRUE(refs[1].answers.empty());
}

// A SQuAD JSON document says how to convert it, instead of "line 1: malformed JSON".
TEST(QaFiles, SquadJsonReferencesSayHowToConvert) {
  const std::string path =
      write_temp("squad_refs.json",
                 "{\n  \"version\": \"v2.0\",\n  \"data\": [{\"title\": \"t\", \"paragraphs\": []}]\n}\n");
  const std::string error = qlora_test::error_of([&] { read_mrc_references(path); });
  EXPECT_NE(error.find("qlora prepare squad_to_mrc --input " + path), std::string::npos) << error;
}

}  // namespace
