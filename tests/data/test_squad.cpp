// SQuAD -> MRC conversion on small hand-written documents: offset modes, NFC mapping, v2,
// multiple answers, ids, and every structural error naming the file and the JSON path.
// Offsets below were counted by hand and re-checked with Python str indices.
#include <gtest/gtest.h>

#include "data_test_util.h"
#include "qlora/data/span.h"
#include "qlora/data/squad.h"

namespace {

using qlora::Json;
using qlora::data::OffsetMode;
using qlora::data::SquadToMrcOptions;
using namespace qlora_test;

// "Hà Nội" occurs at code points 23 and 31 (Python: [23, 31]); the context has 50 code points.
const char* kContext = "Thủ đô của Việt Nam là Hà Nội. Hà Nội có nhiều hồ.";

Json answer(const std::string& text, int64_t start) { return {{"text", text}, {"answer_start", start}}; }

Json question(const std::string& id, const Json& answers) {
  return {{"id", id}, {"question", "Thủ đô của Việt Nam là gì?"}, {"answers", answers}};
}

Json document(const Json& qas, const std::string& context = kContext) {
  return {{"version", "1.1"},
          {"data", Json::array({{{"title", "Việt Nam"},
                                 {"paragraphs", Json::array({{{"context", context}, {"qas", qas}}})}}})}};
}

struct SquadRun {
  ScratchDir dir;
  SquadToMrcOptions options;
  explicit SquadRun(const Json& doc, OffsetMode mode = OffsetMode::drop) {
    options.inputs = {write_text(dir.path("in.json"), doc.dump())};
    options.output = dir.path("out.jsonl");
    options.offset_mode = mode;
  }
  qlora::data::SquadToMrcResult go() { return qlora::data::squad_to_mrc(options); }
  std::vector<Json> out() const { return read_jsonl(options.output); }
};

TEST(SquadToMrc, WritesOneRecordPerQuestionWithAllFields) {
  SquadRun run(document(Json::array({question("q1", Json::array({answer("Hà Nội", 23)}))})));
  const auto result = run.go();
  const auto out = run.out();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].dump(), Json({{"id", "q1"},
                                 {"title", "Việt Nam"},
                                 {"context", kContext},
                                 {"question", "Thủ đô của Việt Nam là gì?"},
                                 {"answers", Json::array({answer("Hà Nội", 23)})},
                                 {"is_impossible", false}})
                               .dump());
  EXPECT_EQ(result.counts.articles, 1);
  EXPECT_EQ(result.counts.paragraphs, 1);
  EXPECT_EQ(result.counts.questions, 1);
  EXPECT_EQ(result.counts.answers_checked, 1);
  EXPECT_EQ(result.counts.mismatched_offsets, 0);
  EXPECT_EQ(result.counts.written, 1);
  EXPECT_TRUE(result.warnings.messages().empty());
}

TEST(SquadToMrc, DropModeDropsBadAnswerAndNamesTheQuestion) {
  SquadRun run(document(Json::array({question("good", Json::array({answer("Hà Nội", 23)})),
                                     question("bad", Json::array({answer("Hà Nội", 30)}))})));
  const auto result = run.go();
  const auto out = run.out();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0]["id"], "good");
  EXPECT_EQ(result.counts.mismatched_offsets, 1);
  EXPECT_EQ(result.counts.answers_dropped, 1);
  EXPECT_EQ(result.counts.records_dropped, 1);
  EXPECT_EQ(result.counts.written, 1);
  ASSERT_EQ(result.warnings.messages().size(), 2u);
  EXPECT_CONTAINS(result.warnings.messages()[0], "\"bad\"");
  EXPECT_CONTAINS(result.warnings.messages()[0], "data[0].paragraphs[0].qas[1].answers[0]");
  EXPECT_CONTAINS(result.warnings.messages()[1], "\"bad\" dropped");
}

TEST(SquadToMrc, FixModeMovesToNearestOccurrence) {
  // 30 is 7 from 23 and 1 from 31 -> 31. 27 is 4 from both -> the earlier, 23.
  SquadRun run(document(Json::array({question("near", Json::array({answer("Hà Nội", 30)})),
                                     question("tie", Json::array({answer("Hà Nội", 27)})),
                                     question("absent", Json::array({answer("Sài Gòn", 0)}))})),
               OffsetMode::fix_offsets);
  const auto result = run.go();
  const auto out = run.out();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]["answers"][0]["answer_start"], 31);
  EXPECT_EQ(out[1]["answers"][0]["answer_start"], 23);
  EXPECT_EQ(result.counts.mismatched_offsets, 3);
  EXPECT_EQ(result.counts.fixed, 2);
  EXPECT_EQ(result.counts.answers_dropped, 1);
  EXPECT_EQ(result.counts.records_dropped, 1);
  EXPECT_CONTAINS(result.warnings.messages()[2], "does not occur in the context");
}

TEST(SquadToMrc, StrictModeFailsNamingFileIdExpectedAndFound) {
  SquadRun run(document(Json::array({question("q7", Json::array({answer("Hà Nội", 30)}))})),
               OffsetMode::strict);
  const std::string message = error_of([&] { run.go(); });
  EXPECT_CONTAINS(message, run.options.inputs[0]);
  EXPECT_CONTAINS(message, "data[0].paragraphs[0].qas[0].answers[0]");
  EXPECT_CONTAINS(message, "\"q7\"");
  EXPECT_CONTAINS(message, "expected \"Hà Nội\"");
  EXPECT_CONTAINS(message, "found \" Hà Nộ\"");  // code points 30..35
  EXPECT_FALSE(fs::exists(run.options.output));
  EXPECT_EQ(run.dir.files(), std::vector<std::string>{"in.json"});
}

TEST(SquadToMrc, KeepsEveryValidReferenceAnswer) {
  // A test-set question with three references, one of them wrong: the two good ones survive.
  SquadRun run(document(Json::array(
      {question("multi", Json::array({answer("Hà Nội", 23), answer("Hà Nội", 2), answer("Hà Nội.", 23)}))})));
  const auto result = run.go();
  const auto out = run.out();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0]["answers"], Json::array({answer("Hà Nội", 23), answer("Hà Nội.", 23)}));
  EXPECT_EQ(result.counts.answers_checked, 3);
  EXPECT_EQ(result.counts.answers_dropped, 1);
  EXPECT_EQ(result.counts.records_dropped, 0);
}

TEST(SquadToMrc, NegativeOrPastTheEndOffsetsAreMismatches) {
  SquadRun run(document(Json::array({question("neg", Json::array({answer("Hà Nội", -1)})),
                                     question("far", Json::array({answer("Hà Nội", 500)}))})),
               OffsetMode::fix_offsets);
  const auto result = run.go();
  const auto out = run.out();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]["answers"][0]["answer_start"], 23);  // nearest to -1
  EXPECT_EQ(out[1]["answers"][0]["answer_start"], 31);  // nearest to 500
  EXPECT_EQ(result.counts.fixed, 2);
}

TEST(SquadToMrc, EmptyAnswerTextIsNeverValid) {
  SquadRun run(document(Json::array({question("empty", Json::array({answer("", 0)}))})));
  const auto result = run.go();
  EXPECT_TRUE(run.out().empty());
  EXPECT_EQ(result.counts.empty_answers, 1);
  EXPECT_EQ(result.counts.records_dropped, 1);
}

TEST(SquadToMrc, AnswerableQuestionWithoutAnswersIsDroppedOrStrictError) {
  const Json doc = document(Json::array({question("none", Json::array())}));
  SquadRun drop(doc);
  EXPECT_EQ(drop.go().counts.records_dropped, 1);
  SquadRun strict(doc, OffsetMode::strict);
  const std::string message = error_of([&] { strict.go(); });
  EXPECT_CONTAINS(message, "data[0].paragraphs[0].qas[0].answers");
  EXPECT_CONTAINS(message, "no answers");
}

TEST(SquadToMrc, NfdInputIsNormalisedAndOffsetsMapped) {
  // NFD "Việt Nam và Hà Nội": "Hà Nội" starts at NFD code point 15 and NFC code point 12
  // (hand count: Việt is 6 code points in NFD, 4 in NFC; và is 3 vs 2).
  const std::string nfd_context = "Vie\xcc\xa3\xcc\x82t Nam va\xcc\x80 Ha\xcc\x80 No\xcc\xa3\xcc\x82i";
  const std::string nfd_answer = "Ha\xcc\x80 No\xcc\xa3\xcc\x82i";
  Json qa = question("nfd", Json::array({answer(nfd_answer, 15)}));
  qa["question"] = "Thu\xcc\x89 đô?";
  SquadRun run(document(Json::array({qa}), nfd_context));
  const auto result = run.go();
  const auto out = run.out();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0]["context"], "Việt Nam và Hà Nội");
  EXPECT_EQ(out[0]["question"], "Thủ đô?");
  EXPECT_EQ(out[0]["answers"], Json::array({answer("Hà Nội", 12)}));
  EXPECT_EQ(result.counts.mismatched_offsets, 0);
}

TEST(SquadToMrc, NfdOffsetThatWasWrongIsStillReportedInOriginalUnits) {
  const std::string nfd_context = "Vie\xcc\xa3\xcc\x82t Nam va\xcc\x80 Ha\xcc\x80 No\xcc\xa3\xcc\x82i";
  SquadRun run(document(Json::array({question("x", Json::array({answer("Hà Nội", 12)}))}), nfd_context),
               OffsetMode::strict);
  // 12 is the NFC offset, but offsets are in the input's own code points: NFD 12 is inside "và".
  EXPECT_CONTAINS(error_of([&] { run.go(); }), "answer_start 12 does not point at the answer");
}

TEST(SquadToMrc, SquadV2ImpossibleQuestionsHaveEmptyAnswersAndKeepPlausibleSeparately) {
  Json impossible = {{"id", "imp"},
                     {"question", "Thủ đô của Lào là gì?"},
                     {"answers", Json::array()},
                     {"is_impossible", true},
                     {"plausible_answers", Json::array({answer("Hà Nội", 23)})}};
  Json answerable = question("ans", Json::array({answer("Hà Nội", 31)}));
  answerable["is_impossible"] = false;
  SquadRun run(document(Json::array({impossible, answerable})));
  const auto result = run.go();
  const auto out = run.out();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]["answers"], Json::array());
  EXPECT_EQ(out[0]["is_impossible"], true);
  EXPECT_EQ(out[0]["plausible_answers"], Json::array({answer("Hà Nội", 23)}));
  EXPECT_FALSE(out[1].contains("plausible_answers"));
  EXPECT_EQ(result.counts.impossible, 1);
  EXPECT_EQ(result.counts.answerable, 1);
  EXPECT_EQ(result.counts.answers_checked, 1);  // plausible answers are not counted

  run.options.keep_plausible_answers = false;
  run.go();
  EXPECT_FALSE(run.out()[0].contains("plausible_answers"));
}

TEST(SquadToMrc, ImpossibleQuestionWithAnswersWarnsAndDropsThem) {
  Json qa = question("imp", Json::array({answer("Hà Nội", 23)}));
  qa["is_impossible"] = true;
  SquadRun run(document(Json::array({qa})));
  const auto result = run.go();
  EXPECT_EQ(run.out()[0]["answers"], Json::array());
  ASSERT_EQ(result.warnings.messages().size(), 1u);
  EXPECT_CONTAINS(result.warnings.messages()[0], "is_impossible");
}

TEST(SquadToMrc, RepairIdsRenamesDuplicatesAndEmptyIds) {
  const Json doc = document(Json::array({question("a", Json::array({answer("Hà Nội", 23)})),
                                         question("a", Json::array({answer("Hà Nội", 23)})),
                                         question("", Json::array({answer("Hà Nội", 23)}))}));
  SquadRun run(doc);
  run.options.repair_ids = true;
  const auto result = run.go();
  const auto out = run.out();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0]["id"], "a");
  EXPECT_EQ(out[1]["id"], "a#2");
  EXPECT_EQ(out[2]["id"], "in#q3");
  EXPECT_EQ(result.counts.ids_repaired, 2);
}

// ids_repaired counts records in the output: a renamed question then dropped (no valid answer) is not one.
TEST(SquadToMrc, IdsRepairedCountsOnlyWrittenRecords) {
  const Json doc = document(Json::array({question("a", Json::array({answer("Hà Nội", 23)})),
                                         question("a", Json::array({answer("Hà Nội", 5)})),  // wrong offset
                                         question("a", Json::array({answer("Hà Nội", 23)}))}));
  SquadRun run(doc);
  run.options.repair_ids = true;
  const auto result = run.go();
  ASSERT_EQ(run.out().size(), 2u);
  EXPECT_EQ(result.counts.records_dropped, 1);
  EXPECT_EQ(result.counts.ids_repaired, 1);
}

TEST(SquadToMrc, IdsMustBeUniqueAcrossInputFiles) {
  SquadRun run(document(Json::array({question("same", Json::array({answer("Hà Nội", 23)}))})));
  run.options.inputs.push_back(run.options.inputs[0]);
  const std::string message = error_of([&] { run.go(); });
  EXPECT_CONTAINS(message, "duplicate id \"same\"");
  // The remedy named is an option that exists.
  EXPECT_CONTAINS(message, "without --strict");
  EXPECT_EQ(message.find("--repair-ids"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(run.options.output));
}

TEST(SquadToMrc, IntegerIdsBecomeStrings) {
  Json qa = question("x", Json::array({answer("Hà Nội", 23)}));
  qa["id"] = 42;
  SquadRun run(document(Json::array({qa})));
  run.go();
  EXPECT_EQ(run.out()[0]["id"], "42");
}

TEST(SquadToMrc, WarningsAreCappedButCounted) {
  Json qas = Json::array();
  for (int i = 0; i < 5; ++i)
    qas.push_back(question("q" + std::to_string(i), Json::array({answer("Hà Nội", 0)})));
  SquadRun run(document(qas));
  run.options.max_warnings = 3;
  const auto result = run.go();
  EXPECT_EQ(result.warnings.messages().size(), 3u);
  EXPECT_EQ(result.warnings.suppressed(), 7u);  // 5 answer warnings + 5 record warnings
  const Json report = result.to_json();
  EXPECT_EQ(report["counts"]["records_dropped"], 5);
  EXPECT_EQ(report["warnings_suppressed"], 7);
}

// --- Structural errors: always an Error naming the file and the JSON path -------------------

std::string structural_error(const std::string& json_text) {
  ScratchDir dir;
  SquadToMrcOptions options;
  options.inputs = {write_text(dir.path("bad.json"), json_text)};
  options.output = dir.path("out.jsonl");
  options.offset_mode = OffsetMode::fix_offsets;  // even the most lenient mode
  const std::string message = error_of([&] { qlora::data::squad_to_mrc(options); });
  EXPECT_CONTAINS(message, options.inputs[0]);
  EXPECT_FALSE(fs::exists(options.output)) << "partial output after: " << message;
  EXPECT_EQ(dir.files(), std::vector<std::string>{"bad.json"}) << "temporary file left behind";
  return message;
}

TEST(SquadStructure, MissingDataIsAnError) {
  EXPECT_CONTAINS(structural_error(R"({"version": "1.1"})"), "bad.json: data: missing");
}

TEST(SquadStructure, MisspelledKeyGetsASuggestion) {
  EXPECT_CONTAINS(structural_error(R"({"dat": []})"),
                  "data: missing (is \"dat\" a misspelling of \"data\"?)");
}

TEST(SquadStructure, ParagraphWithoutContext) {
  const std::string message = structural_error(
      R"({"data": [{"title": "t", "paragraphs": [{"context": "x", "qas": []}, {"qas": []}]}]})");
  EXPECT_CONTAINS(message, "data[0].paragraphs[1].context: missing");
}

TEST(SquadStructure, NonStringQuestion) {
  const std::string message = structural_error(
      R"({"data": [{"paragraphs": [{"context": "abc", "qas": [
          {"id": "1", "question": "q?", "answers": [{"text": "a", "answer_start": 0}]},
          {"id": "2", "question": 7, "answers": []}]}]}]})");
  EXPECT_CONTAINS(message, "data[0].paragraphs[0].qas[1].question: expected a string, got number");
}

TEST(SquadStructure, AnswerStartMustBeAnInteger) {
  for (const char* start : {"\"0\"", "0.5", "null"}) {
    const std::string message = structural_error(
        std::string(
            R"({"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "1", "question": "q?", "answers": [{"text": "a", "answer_start": )") +
        start + "}]}]}]}]}");
    EXPECT_CONTAINS(message, "data[0].paragraphs[0].qas[0].answers[0].answer_start: expected an integer");
  }
}

TEST(SquadStructure, DuplicateQuestionIds) {
  const std::string message = structural_error(
      R"({"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "x", "question": "q?", "answers": [{"text": "a", "answer_start": 0}]}]}]},
                   {"paragraphs": [{"context": "abc", "qas": [{"id": "x", "question": "q?", "answers": [{"text": "a", "answer_start": 0}]}]}]}]})");
  EXPECT_CONTAINS(message, "data[1].paragraphs[0].qas[0].id: duplicate id \"x\"");
}

TEST(SquadStructure, MissingIdIsAnErrorUnlessRepaired) {
  EXPECT_CONTAINS(
      structural_error(
          R"({"data": [{"paragraphs": [{"context": "abc", "qas": [{"question": "q?", "answers": []}]}]}]})"),
      "data[0].paragraphs[0].qas[0].id: missing or empty id");
}

TEST(SquadStructure, WrongTypesAlongThePath) {
  EXPECT_CONTAINS(structural_error(R"({"data": {}})"), "data: expected an array, got object");
  EXPECT_CONTAINS(structural_error(R"({"data": [3]})"), "data[0]: expected an object, got number");
  EXPECT_CONTAINS(
      structural_error(
          R"({"data": [{"paragraphs": [{"context": "a", "qas": [{"id": "1", "question": "q", "answers": ["a"]}]}]}]})"),
      "data[0].paragraphs[0].qas[0].answers[0]: expected an object, got string");
  EXPECT_CONTAINS(
      structural_error(
          R"({"data": [{"paragraphs": [{"context": "a", "qas": [{"id": "1", "question": "q", "is_impossible": "no", "answers": []}]}]}]})"),
      "qas[0].is_impossible: expected a boolean");
  EXPECT_CONTAINS(structural_error(R"({"data": [{"title": 5, "paragraphs": []}]})"),
                  "data[0].title: expected a string");
  EXPECT_CONTAINS(structural_error(R"([1, 2])"), "expected a SQuAD JSON object, got array");
}

TEST(SquadStructure, MalformedJsonNamesLine) {
  EXPECT_CONTAINS(structural_error("{\n\"data\": [\n}"), "bad.json:3:");
}

TEST(SquadStructure, MissingInputFileIsNamed) {
  SquadToMrcOptions options;
  options.inputs = {"/nonexistent/squad.json"};
  options.output = "/nonexistent/out.jsonl";
  EXPECT_CONTAINS(error_of([&] { qlora::data::squad_to_mrc(options); }), "/nonexistent/squad.json");
}

TEST(SquadStructure, FailureLeavesExistingOutputUntouched) {
  ScratchDir dir;
  SquadToMrcOptions options;
  options.inputs = {write_text(dir.path("bad.json"), R"({"data": [{"paragraphs": [{}]}]})")};
  options.output = write_text(dir.path("out.jsonl"), "old\n");
  error_of([&] { qlora::data::squad_to_mrc(options); });
  EXPECT_EQ(slurp(options.output), "old\n");
}

TEST(OffsetMode, ParsesNamesAndSuggests) {
  EXPECT_EQ(qlora::data::parse_offset_mode("fix_offsets"), OffsetMode::fix_offsets);
  EXPECT_EQ(qlora::data::parse_offset_mode("fix-offsets"), OffsetMode::fix_offsets);
  EXPECT_EQ(qlora::data::parse_offset_mode("strict"), OffsetMode::strict);
  EXPECT_CONTAINS(error_of([] { qlora::data::parse_offset_mode("stirct"); }), "did you mean 'strict'");
}

// --- The span helper on its own ------------------------------------------------------------

TEST(SpanContext, MapsOffsetsThroughNfc) {
  const qlora::data::SpanContext context(
      "Vie\xcc\xa3\xcc\x82t Nam va\xcc\x80 Ha\xcc\x80 No\xcc\xa3\xcc\x82i");
  EXPECT_EQ(context.raw_length(), 24);  // Python: len(nfd) == 24
  EXPECT_EQ(context.map_offset(0), 0);
  EXPECT_EQ(context.map_offset(6), 4);    // after "Việt"
  EXPECT_EQ(context.map_offset(15), 12);  // before "Hà"
  EXPECT_EQ(context.map_offset(24), 18);  // the end
  EXPECT_EQ(context.map_offset(30), 24);  // past the end keeps its distance
  EXPECT_EQ(context.map_offset(-2), -2);
  EXPECT_TRUE(context.holds(qlora::data::nfc_codepoints("Hà Nội"), 12));
  EXPECT_EQ(context.text_at(16, 10), "ội");
}

}  // namespace
