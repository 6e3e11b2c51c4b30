// SQuAD -> MRC on real Vietnamese data (nanibot-vi, Zalo AI 2019). Expected records and counts
// come from tests/fixtures/data/make_nanibot_fixtures.py, an independent Python implementation
// of the documented rules (str indices + unicodedata), run on the files in ../shared/data; its
// printed counts are pasted below.
#include <gtest/gtest.h>

#include <set>

#include "data_test_util.h"
#include "qlora/data/split.h"
#include "qlora/data/squad.h"

namespace {

using qlora::Json;
using qlora::data::OffsetMode;
using qlora::data::SquadCounts;
using namespace qlora_test;

struct Expected {
  int64_t questions, answers_checked, mismatched, fixed, answers_dropped, records_dropped, ids_repaired,
      written;
};

void expect_counts(const SquadCounts& c, const Expected& e, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(c.questions, e.questions);
  EXPECT_EQ(c.answerable, e.questions);  // nanibot-vi has no unanswerable questions
  EXPECT_EQ(c.impossible, 0);
  EXPECT_EQ(c.answers_checked, e.answers_checked);
  EXPECT_EQ(c.mismatched_offsets, e.mismatched);
  EXPECT_EQ(c.fixed, e.fixed);
  EXPECT_EQ(c.answers_dropped, e.answers_dropped);
  EXPECT_EQ(c.records_dropped, e.records_dropped);
  EXPECT_EQ(c.ids_repaired, e.ids_repaired);
  EXPECT_EQ(c.written, e.written);
}

qlora::data::MrcConversion convert(const std::vector<std::string>& inputs, OffsetMode mode) {
  qlora::data::SquadToMrcOptions options;
  options.inputs = inputs;
  options.offset_mode = mode;
  options.repair_ids = true;  // nanibot-vi repeats ids and leaves 15 empty
  return qlora::data::convert_squad(options);
}

void expect_records(const std::vector<Json>& got, const std::string& expected_jsonl) {
  const auto expected = read_jsonl(fixture(expected_jsonl));
  ASSERT_EQ(got.size(), expected.size()) << expected_jsonl;
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], expected[i]) << expected_jsonl << " record " << i;
}

// --- Shipped sample (train_wiki articles 6, 63, 66; test_reg article 1) ---------------------

TEST(NanibotSample, TrainDropMatchesPythonReference) {
  const auto c = convert({fixture("nanibot_train_sample.json")}, OffsetMode::drop);
  // Python: questions 30, checked 30, mismatched 8, fixed 0, dropped 8/8, ids repaired 1, written 22.
  expect_counts(c.result.counts, {30, 30, 8, 0, 8, 8, 1, 22}, "drop");
  expect_records(c.records, "nanibot_train_sample.expected_drop.jsonl");
}

TEST(NanibotSample, TrainFixMatchesPythonReference) {
  const auto c = convert({fixture("nanibot_train_sample.json")}, OffsetMode::fix_offsets);
  // Python: 6 of the 8 bad answers occur in the context and move; 2 do not (one lacks a word of
  // the context's phrase, one has answer_start -1 and a text that is not in the context).
  expect_counts(c.result.counts, {30, 30, 8, 6, 2, 2, 1, 28}, "fix_offsets");
  expect_records(c.records, "nanibot_train_sample.expected_fix_offsets.jsonl");
}

TEST(NanibotSample, TestSetMultipleReferencesAndEmptyIds) {
  // 15 questions x 3 references, all with answer_start 0 although the text is further on.
  const auto drop = convert({fixture("nanibot_test_sample.json")}, OffsetMode::drop);
  // ids_repaired counts written records only: all 15 renamed questions are dropped here.
  expect_counts(drop.result.counts, {15, 45, 45, 0, 45, 15, 0, 0}, "drop");
  expect_records(drop.records, "nanibot_test_sample.expected_drop.jsonl");  // empty
  const auto fix = convert({fixture("nanibot_test_sample.json")}, OffsetMode::fix_offsets);
  expect_counts(fix.result.counts, {15, 45, 45, 45, 0, 0, 15, 15}, "fix_offsets");
  expect_records(fix.records, "nanibot_test_sample.expected_fix_offsets.jsonl");
  EXPECT_EQ(fix.records[0]["id"], "nanibot_test_sample#q1");
}

TEST(NanibotSample, StrictModeStopsAtTheFirstBadAnswer) {
  qlora::data::SquadToMrcOptions options;
  options.inputs = {fixture("nanibot_train_sample.json")};
  options.offset_mode = OffsetMode::strict;
  options.repair_ids = true;
  const std::string message = error_of([&] { qlora::data::convert_squad(options); });
  EXPECT_CONTAINS(message, "nanibot_train_sample.json: data[1].paragraphs[0].qas[");
  EXPECT_CONTAINS(message, "A?R00000T");
  EXPECT_CONTAINS(message, "expected \"");
}

TEST(NanibotSample, NfdCopyGivesTheNfcRecords) {
  // nanibot_nfd.json is train_wiki article 0 converted to NFD with answer_start recomputed in NFD
  // code points; the expected output is the original NFC text and offsets.
  const auto c = convert({fixture("nanibot_nfd.json")}, OffsetMode::strict);
  EXPECT_EQ(c.result.counts.mismatched_offsets, 0);
  expect_records(c.records, "nanibot_nfd.expected.jsonl");
}

TEST(NanibotSample, DemoSampleHasEnoughQuestionsAndSomeBadOffsets) {
  // data/nanibot-vi-sample is train_wiki articles 48..66; Python: 162 questions, 8 mismatched,
  // 6 fixable; drop writes 154, fix_offsets 160. No repeated ids, so no repair is needed.
  const std::string sample = std::string(QLORA_SOURCE_DIR) + "/data/nanibot-vi-sample/train_wiki_sample.json";
  qlora::data::SquadToMrcOptions options;
  options.inputs = {sample};
  expect_counts(qlora::data::convert_squad(options).result.counts, {162, 162, 8, 0, 8, 8, 0, 154}, "drop");
  options.offset_mode = OffsetMode::fix_offsets;
  expect_counts(qlora::data::convert_squad(options).result.counts, {162, 162, 8, 6, 2, 2, 0, 160}, "fix");
  options.inputs = {std::string(QLORA_SOURCE_DIR) + "/data/nanibot-vi-sample/test_wiki_sample.json"};
  expect_counts(qlora::data::convert_squad(options).result.counts, {29, 87, 0, 0, 0, 0, 0, 29},
                "test sample");
}

TEST(NanibotSample, DemoPipelinePrepareThenSplitByContext) {
  // The README demo: prepare the shipped sample, then a 10% split that keeps each paragraph's
  // questions together. 160 records at 0.1 -> 16 wanted; whole groups of 5..19 questions.
  ScratchDir dir;
  qlora::data::SquadToMrcOptions prepare;
  prepare.inputs = {std::string(QLORA_SOURCE_DIR) + "/data/nanibot-vi-sample/train_wiki_sample.json"};
  prepare.output = dir.path("mrc.jsonl");
  prepare.offset_mode = OffsetMode::fix_offsets;
  ASSERT_EQ(qlora::data::squad_to_mrc(prepare).counts.written, 160);
  qlora::data::SplitOptions split;
  split.input = prepare.output;
  split.train_output = dir.path("train.jsonl");
  split.valid_output = dir.path("valid.jsonl");
  const auto result = qlora::data::split(split);
  EXPECT_EQ(result.group_field, "context");
  EXPECT_EQ(result.groups, 19);
  EXPECT_EQ(result.target_valid, 16);
  EXPECT_EQ(result.train + result.valid, 160);
  EXPECT_GT(result.valid, 0);
  std::set<std::string> train_contexts;
  for (const auto& r : read_jsonl(split.train_output)) train_contexts.insert(r["context"]);
  for (const auto& r : read_jsonl(split.valid_output)) EXPECT_EQ(train_contexts.count(r["context"]), 0u);
}

// --- The full files in ../shared (local only) ------------------------------------------------

class NanibotFull : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = shared_data("qa/nanibot-vi");
    if (dir_.empty())
      GTEST_SKIP() << "../shared/data/qa/nanibot-vi not present; real-data counts not checked";
  }
  std::string file(const std::string& name) const { return dir_ + "/" + name + ".json"; }
  std::string dir_;
};

TEST_F(NanibotFull, DropModeCountsMatchPython) {
  // Python (make_nanibot_fixtures.py), mode drop:
  //   train_wiki 599 q, 8 mismatched, 591 written, 1 repeated id
  //   train_reg  626 q, 0 mismatched, 626 written, 1 repeated id
  //   test_wiki  111 q, 333 answers, 0 mismatched
  //   test_reg    95 q, 285 answers, 45 mismatched (15 questions lose all 3), 15 empty ids (all in the
  //               dropped questions, so 0 repaired among the 80 written)
  expect_counts(convert({file("train_wiki")}, OffsetMode::drop).result.counts, {599, 599, 8, 0, 8, 8, 1, 591},
                "train_wiki");
  expect_counts(convert({file("train_reg")}, OffsetMode::drop).result.counts, {626, 626, 0, 0, 0, 0, 1, 626},
                "train_reg");
  expect_counts(convert({file("test_wiki")}, OffsetMode::drop).result.counts, {111, 333, 0, 0, 0, 0, 0, 111},
                "test_wiki");
  expect_counts(convert({file("test_reg")}, OffsetMode::drop).result.counts, {95, 285, 45, 0, 45, 15, 0, 80},
                "test_reg");
}

TEST_F(NanibotFull, FixModeCountsMatchPython) {
  // Python, mode fix_offsets: train_wiki fixes 6 of its 8 (2 answers are not in the context);
  // test_reg fixes all 45. train_wiki + train_reg in one output: 1223 written.
  expect_counts(convert({file("train_wiki")}, OffsetMode::fix_offsets).result.counts,
                {599, 599, 8, 6, 2, 2, 1, 597}, "train_wiki");
  expect_counts(convert({file("test_reg")}, OffsetMode::fix_offsets).result.counts,
                {95, 285, 45, 45, 0, 0, 15, 95}, "test_reg");
  expect_counts(convert({file("train_wiki"), file("train_reg")}, OffsetMode::fix_offsets).result.counts,
                {1225, 1225, 8, 6, 2, 2, 2, 1223}, "train_wiki+train_reg");
}

TEST_F(NanibotFull, RepeatedIdsAreErrorsWithoutRepair) {
  qlora::data::SquadToMrcOptions options;
  options.inputs = {file("train_wiki")};
  const std::string message = error_of([&] { qlora::data::convert_squad(options); });
  // Python: the id A?R00000T636813360834854506 appears at data[6].paragraphs[0].qas[3] and qas[4].
  EXPECT_CONTAINS(
      message,
      "train_wiki.json: data[6].paragraphs[0].qas[4].id: duplicate id \"A?R00000T636813360834854506\"");
}

}  // namespace
