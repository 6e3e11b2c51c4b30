// Source/target pairs -> {"id","source","target"} JSONL, from JSONL with configurable field names
// or from two parallel text files; every invalid input names its file and line.
#include <gtest/gtest.h>

#include "data_test_util.h"
#include "qlora/data/pairs.h"

namespace {

using qlora::Json;
using qlora::data::PairsOptions;
using namespace qlora_test;

TEST(Pairs, JsonlWithDefaultFields) {
  ScratchDir dir;
  PairsOptions options;
  options.inputs = {
      write_text(dir.path("qa.jsonl"),
                 "{\"source\": \"hỏi: Thủ đô?\", \"target\": \"Hà Nội\"}\n"
                 "{\"source\": \"Vie\xcc\xa3\xcc\x82t\", \"target\": \"Nam\", \"extra\": 1}\n")};
  options.output = dir.path("out.jsonl");
  const auto result = qlora::data::prepare_pairs(options);
  const auto out = read_jsonl(options.output);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].dump(), R"({"id":"qa-1","source":"hỏi: Thủ đô?","target":"Hà Nội"})");
  EXPECT_EQ(out[1]["source"], "Việt");  // NFC
  EXPECT_FALSE(out[1].contains("extra"));
  EXPECT_EQ(result.counts.written, 2);
}

TEST(Pairs, ConfigurableFieldNames) {
  ScratchDir dir;
  PairsOptions options;
  options.inputs = {write_text(dir.path("rw.jsonl"),
                               "{\"id\": \"r1\", \"informal\": \"ko bít\", \"formal\": \"không biết\"}\n")};
  options.source_field = "informal";
  options.target_field = "formal";
  const auto conversion = qlora::data::convert_pairs(options);
  ASSERT_EQ(conversion.records.size(), 1u);
  EXPECT_EQ(conversion.records[0].dump(), R"({"id":"r1","source":"ko bít","target":"không biết"})");

  options.target_field = "fromal";
  EXPECT_CONTAINS(error_of([&] { qlora::data::convert_pairs(options); }),
                  "rw.jsonl:1: missing required field \"fromal\"");
}

TEST(Pairs, ParallelTextFiles) {
  ScratchDir dir;
  PairsOptions options;
  options.source_text = write_text(dir.path("src.txt"), "một\r\nhai\nba");  // CRLF and no final newline
  options.target_text = write_text(dir.path("tgt.txt"), "one\ntwo\nthree\n");
  options.output = dir.path("out.jsonl");
  const auto result = qlora::data::prepare_pairs(options);
  const auto out = read_jsonl(options.output);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].dump(), R"({"id":"src-1","source":"một","target":"one"})");
  EXPECT_EQ(out[2].dump(), R"({"id":"src-3","source":"ba","target":"three"})");
  EXPECT_EQ(result.counts.read, 3);
}

TEST(PairsErrors, ParallelFilesOfDifferentLength) {
  ScratchDir dir;
  PairsOptions options;
  options.source_text = write_text(dir.path("src.txt"), "a\nb\nc\n");
  options.target_text = write_text(dir.path("tgt.txt"), "x\ny\n");
  options.output = dir.path("out.jsonl");
  const std::string message = error_of([&] { qlora::data::prepare_pairs(options); });
  EXPECT_CONTAINS(message, options.source_text + " has 3 lines");
  EXPECT_CONTAINS(message, options.target_text + " has 2");
  EXPECT_FALSE(fs::exists(options.output));
}

TEST(PairsErrors, EmptySegmentNamesFileAndLine) {
  ScratchDir dir;
  PairsOptions options;
  options.source_text = write_text(dir.path("src.txt"), "a\nb\nc\n");
  options.target_text = write_text(dir.path("tgt.txt"), "x\n  \nz\n");
  options.output = dir.path("out.jsonl");
  EXPECT_CONTAINS(error_of([&] { qlora::data::prepare_pairs(options); }), "tgt.txt:2: empty target segment");
  EXPECT_FALSE(fs::exists(options.output));

  options.skip_invalid = true;
  const auto result = qlora::data::prepare_pairs(options);
  EXPECT_EQ(result.counts.skipped, 1);
  EXPECT_EQ(read_jsonl(options.output).size(), 2u);
  EXPECT_EQ(read_jsonl(options.output)[1]["id"], "src-3");  // ids keep the line number
}

TEST(PairsErrors, MalformedUtf8InTextFile) {
  ScratchDir dir;
  PairsOptions options;
  options.source_text = write_text(dir.path("src.txt"), "a\nb\xff\n");
  options.target_text = write_text(dir.path("tgt.txt"), "x\ny\n");
  EXPECT_CONTAINS(error_of([&] { qlora::data::convert_pairs(options); }), "src.txt:2: malformed UTF-8");
}

TEST(PairsErrors, InvalidJsonlRecords) {
  ScratchDir dir;
  PairsOptions options;
  options.output = dir.path("out.jsonl");
  const auto error_for = [&](const std::string& text) {
    options.inputs = {write_text(dir.path("p.jsonl"), text)};
    const std::string message = error_of([&] { qlora::data::prepare_pairs(options); });
    EXPECT_FALSE(fs::exists(options.output));
    return message;
  };
  EXPECT_CONTAINS(error_for("{\"source\": \"a\", \"target\": \"b\"}\n{\"source\": \"a\"}\n"),
                  "p.jsonl:2: missing required field \"target\"");
  EXPECT_CONTAINS(error_for("{\"source\": 1, \"target\": \"b\"}\n"),
                  "p.jsonl:1: field \"source\" must be a string");
  EXPECT_CONTAINS(error_for("{\"source\": \"\", \"target\": \"b\"}\n"),
                  "p.jsonl:1: field \"source\" is empty");
  EXPECT_CONTAINS(error_for("{\"id\": \"x\", \"source\": \"a\", \"target\": \"b\"}\n{\"id\": \"x\", "
                            "\"source\": \"a\", \"target\": \"b\"}\n"),
                  "p.jsonl:2: duplicate id \"x\"");
  EXPECT_CONTAINS(error_for("[1]\n"), "p.jsonl: [0]: expected a JSON object, got number");
}

TEST(PairsErrors, OptionMistakes) {
  PairsOptions options;
  EXPECT_CONTAINS(error_of([&] { qlora::data::convert_pairs(options); }), "no input files");
  options.source_text = "a.txt";
  EXPECT_CONTAINS(error_of([&] { qlora::data::convert_pairs(options); }), "needs both");
  options.target_text = "b.txt";
  options.inputs = {"c.jsonl"};
  EXPECT_CONTAINS(error_of([&] { qlora::data::convert_pairs(options); }), "not both");
  PairsOptions same;
  same.inputs = {"c.jsonl"};
  same.target_field = "source";
  EXPECT_CONTAINS(error_of([&] { qlora::data::convert_pairs(same); }), "both \"source\"");
}

}  // namespace
