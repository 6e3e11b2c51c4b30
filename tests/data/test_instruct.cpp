// Instruction data -> {"id","instruction","input","output"} JSONL: both input shapes, the Alpaca
// prompt unwrapping, NFC, and every invalid-record path (Error naming FILE:LINE or FILE: [i],
// or skip_invalid with a warning).
#include <gtest/gtest.h>

#include "data_test_util.h"
#include "qlora/data/instruct.h"

namespace {

using qlora::Json;
using qlora::data::InstructOptions;
using namespace qlora_test;

struct InstructRun {
  ScratchDir dir;
  InstructOptions options;
  InstructRun(const std::string& name, const std::string& text) {
    options.inputs = {write_text(dir.path(name), text)};
    options.output = dir.path("out.jsonl");
  }
  qlora::data::InstructResult go() { return qlora::data::prepare_instruct(options); }
  std::vector<Json> out() const { return read_jsonl(options.output); }
  // The Error for an invalid input; also checks that no output (or temporary file) was left.
  std::string error() {
    const std::string message = error_of([&] { go(); });
    EXPECT_CONTAINS(message, options.inputs[0]);
    EXPECT_FALSE(fs::exists(options.output));
    EXPECT_EQ(dir.files().size(), 1u);
    return message;
  }
};

TEST(Instruct, AlpacaJsonArray) {
  InstructRun run("vi.json", R"([
    {"instruction": "Dịch sang tiếng Anh.", "input": "Xin chào", "output": "Hello"},
    {"instruction": "Kể tên ba màu cơ bản.", "output": "Đỏ, vàng, xanh lam."}
  ])");
  const auto result = run.go();
  const auto out = run.out();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].dump(),
            R"({"id":"vi-0","instruction":"Dịch sang tiếng Anh.","input":"Xin chào","output":"Hello"})");
  EXPECT_EQ(out[1]["id"], "vi-1");  // JSON arrays number records by index, as errors do
  EXPECT_EQ(out[1]["input"], "");   // input is optional
  EXPECT_EQ(result.counts.alpaca, 2);
  EXPECT_EQ(result.counts.written, 2);
}

TEST(Instruct, AlpacaJsonlAndPromptResponseJsonl) {
  InstructRun run("mix.jsonl",
                  "{\"instruction\": \"a\", \"input\": null, \"output\": \"b\", \"id\": \"own\"}\n"
                  "\n"
                  "{\"prompt\": \"Thủ đô?\", \"response\": \"Hà Nội\"}\n");
  const auto result = run.go();
  const auto out = run.out();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]["id"], "own");  // a record's own id is kept
  EXPECT_EQ(out[0]["input"], "");
  EXPECT_EQ(out[1].dump(), R"({"id":"mix-3","instruction":"Thủ đô?","input":"","output":"Hà Nội"})");
  EXPECT_EQ(result.counts.alpaca, 1);
  EXPECT_EQ(result.counts.prompt_response, 1);
}

TEST(Instruct, NfdTextIsNormalised) {
  InstructRun run("nfd.jsonl", "{\"prompt\": \"Vie\xcc\xa3\xcc\x82t?\", \"response\": \"Nam\"}\n");
  run.go();
  EXPECT_EQ(run.out()[0]["instruction"], "Việt?");
}

TEST(Instruct, DollySampleUnwrapsTheAlpacaTemplate) {
  // dolly_hhrlhf_5.jsonl: the first 5 records of llm-foundry's dolly_hhrlhf_train_small.jsonl;
  // the expected file was written by make_dolly_fixture.py with plain string slicing.
  InstructOptions options;
  options.inputs = {fixture("dolly_hhrlhf_5.jsonl")};
  const auto conversion = qlora::data::convert_instruct(options);
  const auto expected = read_jsonl(fixture("dolly_hhrlhf_5.expected.jsonl"));
  ASSERT_EQ(conversion.records.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(conversion.records[i], expected[i]) << i;
  EXPECT_EQ(conversion.result.counts.unwrapped, 5);

  options.unwrap_alpaca_prompt = false;
  const auto raw = qlora::data::convert_instruct(options);
  EXPECT_EQ(raw.result.counts.unwrapped, 0);
  EXPECT_CONTAINS(raw.records[0]["instruction"].get<std::string>(),
                  "### Instruction:\nwhat is kangen water?");
}

TEST(Instruct, UnwrapsTheWithInputTemplate) {
  std::string instruction, input;
  ASSERT_TRUE(qlora::data::unwrap_alpaca_prompt(
      "Below is an instruction that describes a task, paired with an input that provides further context. "
      "Write a response that appropriately completes the request.\n\n### Instruction:\nDịch\n\n### Input:\n"
      "Xin chào\n\n### Response:",
      instruction, input));
  EXPECT_EQ(instruction, "Dịch");
  EXPECT_EQ(input, "Xin chào");
  EXPECT_FALSE(qlora::data::unwrap_alpaca_prompt("### Instruction:\nx\n\n### Response:", instruction, input));
  EXPECT_FALSE(qlora::data::unwrap_alpaca_prompt(
      "Below is an instruction that describes a task. Write a response that appropriately completes the "
      "request.\n\n### Instruction:\nno response marker",
      instruction, input));
}

TEST(InstructErrors, MissingRequiredFieldNamesLine) {
  InstructRun run("bad.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"a\"}\n");
  EXPECT_CONTAINS(run.error(), "bad.jsonl:2: missing required field \"output\"");
}

TEST(InstructErrors, WrongTypeNamesArrayIndex) {
  InstructRun run("bad.json",
                  R"([{"instruction": "a", "output": "b"}, {"instruction": ["a"], "output": "b"}])");
  EXPECT_CONTAINS(run.error(), "bad.json: [1]: field \"instruction\" must be a string, got array");
}

TEST(InstructErrors, EmptyInstructionOrOutput) {
  InstructRun blank("bad.jsonl", "{\"instruction\": \"  \\n\", \"output\": \"b\"}\n");
  EXPECT_CONTAINS(blank.error(), "bad.jsonl:1: field \"instruction\" is empty");
  InstructRun empty("bad.jsonl", "{\"prompt\": \"p\", \"response\": \"\"}\n");
  EXPECT_CONTAINS(empty.error(), "bad.jsonl:1: field \"response\" is empty");
}

TEST(InstructErrors, UnknownShapeSuggestsTheField) {
  InstructRun run("bad.jsonl", "{\"instrution\": \"a\", \"outptu\": \"b\"}\n");
  EXPECT_CONTAINS(run.error(), "bad.jsonl:1: record has neither instruction/output nor prompt/response");
  InstructRun typo("bad.jsonl", "{\"promt\": \"a\", \"response\": \"b\"}\n");
  EXPECT_CONTAINS(typo.error(), "missing required field \"prompt\"");
}

TEST(InstructErrors, MixedShapesAndDuplicateIds) {
  InstructRun mixed("bad.jsonl", "{\"instruction\": \"a\", \"response\": \"b\"}\n");
  EXPECT_CONTAINS(mixed.error(), "bad.jsonl:1: record mixes");
  InstructRun dup("bad.jsonl",
                  "{\"id\": 1, \"prompt\": \"a\", \"response\": \"b\"}\n{\"id\": \"1\", \"prompt\": \"c\", "
                  "\"response\": \"d\"}\n");
  EXPECT_CONTAINS(dup.error(), "bad.jsonl:2: duplicate id \"1\"");
  InstructRun bad_id("bad.jsonl", "{\"id\": [1], \"prompt\": \"a\", \"response\": \"b\"}\n");
  EXPECT_CONTAINS(bad_id.error(), "bad.jsonl:1: field \"id\" must be a string or an integer");
}

TEST(InstructErrors, MalformedJsonAndNonObjects) {
  InstructRun jsonl("bad.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \n");
  EXPECT_CONTAINS(jsonl.error(), "bad.jsonl:2: malformed JSON");
  InstructRun array("bad.json", R"([{"prompt": "a", "response": "b"}, "text"])");
  EXPECT_CONTAINS(array.error(), "bad.json: [1]: expected a JSON object, got string");
}

TEST(InstructErrors, SkipInvalidSkipsAndCounts) {
  InstructRun run("some_bad.jsonl",
                  "{\"instruction\": \"a\", \"output\": \"b\"}\n"
                  "{\"instruction\": \"\", \"output\": \"b\"}\n"
                  "{\"instruction\": \"c\", \"output\": 3}\n"
                  "{\"instruction\": \"d\", \"output\": \"e\"}\n");
  run.options.skip_invalid = true;
  const auto result = run.go();
  const auto out = run.out();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1]["id"], "some_bad-4");
  EXPECT_EQ(result.counts.read, 4);
  EXPECT_EQ(result.counts.skipped, 2);
  EXPECT_EQ(result.counts.written, 2);
  ASSERT_EQ(result.warnings.messages().size(), 2u);
  EXPECT_CONTAINS(result.warnings.messages()[0],
                  "some_bad.jsonl:2: field \"instruction\" is empty; record skipped");
  EXPECT_CONTAINS(result.warnings.messages()[1], "some_bad.jsonl:3: field \"output\" must be a string");
  EXPECT_EQ(result.to_json()["counts"]["skipped"], 2);
}

// --- Real Vietnamese Alpaca data (local only: CC BY-NC, never copied into the repo) ----------

TEST(InstructReal, ViAlpacaGpt4vn) {
  const std::string alpaca = shared_data("instruct/vi-alpaca-gpt4vn/vi_alpaca_2k.alpaca.json");
  const std::string prompts = shared_data("instruct/vi-alpaca-gpt4vn/vi_alpaca_reduced_1.jsonl");
  if (alpaca.empty() || prompts.empty())
    GTEST_SKIP() << "../shared/data/instruct/vi-alpaca-gpt4vn not present";
  // Python: 2000 Alpaca records, none blank, 3 of them change under NFC; 5000 {prompt, response}
  // records, none blank or templated, 8 change under NFC.
  InstructOptions options;
  options.inputs = {alpaca, prompts};
  const auto conversion = qlora::data::convert_instruct(options);
  EXPECT_EQ(conversion.result.counts.alpaca, 2000);
  EXPECT_EQ(conversion.result.counts.prompt_response, 5000);
  EXPECT_EQ(conversion.result.counts.unwrapped, 0);
  EXPECT_EQ(conversion.result.counts.written, 7000);
  EXPECT_EQ(conversion.records[0]["instruction"], "Đưa ra ba mẹo để giữ sức khỏe.");
  EXPECT_EQ(conversion.records[2000]["id"], "vi_alpaca_reduced_1-1");
}

TEST(InstructReal, FullDollyFile) {
  const std::string dolly = shared_data("instruct/dolly-hhrlhf/dolly_hhrlhf_train_small.jsonl");
  if (dolly.empty()) GTEST_SKIP() << "../shared/data/instruct/dolly-hhrlhf not present";
  InstructOptions options;
  options.inputs = {dolly};
  const auto result = qlora::data::convert_instruct(options).result;
  // Python: all 1000 prompts start with the no-input Alpaca head and end with "### Response:\n".
  EXPECT_EQ(result.counts.prompt_response, 1000);
  EXPECT_EQ(result.counts.unwrapped, 1000);
  EXPECT_EQ(result.counts.written, 1000);
}

}  // namespace
