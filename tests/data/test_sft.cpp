// SFT samples: ids and labels equal to the reference (tests/fixtures/data/sft/expected.json, from
// tools/gen_sft_fixtures.py: alpaca-lora's generate_and_tokenize_prompt and per-segment tokenization of
// transformers' chat-template renderings, with the HF aidreams260K tokenizer), truncation and drop
// counts, packing invariants, and malformed records named by FILE:LINE.
#include <gtest/gtest.h>

#include <numeric>

#include "data_test_util.h"
#include "qlora/data/sft.h"
#include "qlora/tokenizer/tokenizer.h"

namespace {

using qlora::Json;
using qlora::data::kIgnoreIndex;
using qlora::data::PromptTemplate;
using qlora::data::SftOptions;
using qlora::data::SftSample;
using namespace qlora_test;

// The shipped copy of ../shared/data/models/aidreams260K's tokenizer (byte-identical files), so CI needs
// no shared data.
const qlora::Tokenizer& aidreams() {
  static const auto tokenizer =
      qlora::load_tokenizer(std::string(QLORA_FIXTURES_DIR) + "/tokenizers/aidreams260K");
  return *tokenizer;
}

const Json& expected_cases() {
  static const Json cases = qlora::read_json_file(fixture("sft/expected.json"))["cases"];
  return cases;
}

const Json& expected_case(const std::string& name) {
  for (const Json& c : expected_cases()) {
    if (c["name"] == name) return c;
  }
  throw std::runtime_error("no fixture case " + name);
}

qlora::data::SftDataset build(const Json& c, bool packing = false) {
  const auto records = qlora::data::read_sft_records(fixture("sft/" + c["input"].get<std::string>()));
  SftOptions options;
  options.max_seq_length = c["max_seq_length"];
  options.train_on_inputs = c["train_on_inputs"];
  options.packing = packing;
  return qlora::data::build_sft_dataset(records, PromptTemplate::named(c["template"]), aidreams(), options);
}

// Every case of the fixture: the same kept samples, ids and labels, and the same counts.
TEST(Sft, IdsAndLabelsMatchReference) {
  for (const Json& c : expected_cases()) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const auto dataset = build(c);
    std::vector<const Json*> kept;
    for (const Json& sample : c["samples"]) {
      if (!sample.is_null()) kept.push_back(&sample);
    }
    ASSERT_EQ(dataset.samples.size(), kept.size());
    for (size_t i = 0; i < kept.size(); ++i) {
      SCOPED_TRACE("kept sample " + std::to_string(i));
      EXPECT_EQ(dataset.samples[i].input_ids, (*kept[i])["input_ids"].get<std::vector<int64_t>>());
      EXPECT_EQ(dataset.samples[i].labels, (*kept[i])["labels"].get<std::vector<int64_t>>());
      EXPECT_TRUE(dataset.samples[i].segment_ids.empty());
    }
    const Json& stats = c["stats"];
    EXPECT_EQ(dataset.stats.records, static_cast<int64_t>(c["samples"].size()));
    EXPECT_EQ(dataset.stats.samples, stats["samples"].get<int64_t>());
    EXPECT_EQ(dataset.stats.truncated, stats["truncated"].get<int64_t>());
    EXPECT_EQ(dataset.stats.dropped, stats["dropped"].get<int64_t>());
    EXPECT_EQ(dataset.stats.tokens, stats["tokens"].get<int64_t>());
    EXPECT_EQ(dataset.stats.masked_tokens, stats["masked_tokens"].get<int64_t>());
    EXPECT_EQ(dataset.stats.rows, dataset.stats.samples);
  }
}

// The fixture's cut cases really exercise both outcomes (else the count checks above prove little).
TEST(Sft, TruncationCasesTruncateAndDrop) {
  for (const std::string name : {"alpaca_cut", "chatml_cut", "llama2_cut"}) {
    SCOPED_TRACE(name);
    const Json& c = expected_case(name);
    const auto dataset = build(c);
    EXPECT_GT(dataset.stats.truncated, 0);
    EXPECT_GT(dataset.stats.dropped, 0);
    for (const auto& sample : dataset.samples) {
      EXPECT_LE(static_cast<int64_t>(sample.input_ids.size()), c["max_seq_length"].get<int64_t>());
      EXPECT_NE(std::count(sample.labels.begin(), sample.labels.end(), kIgnoreIndex),
                static_cast<std::ptrdiff_t>(sample.labels.size()));
    }
  }
}

TEST(Sft, SingleTurnEndsWithEosUnlessDisabled) {
  const auto records = qlora::data::read_sft_records(fixture("sft/alpaca.jsonl"));
  const auto alpaca = PromptTemplate::named("alpaca");
  SftOptions options;
  const SftSample with_eos = qlora::data::tokenize_sft_record(records[0], alpaca, aidreams(), options);
  EXPECT_EQ(with_eos.input_ids.front(), aidreams().special_ids().bos);
  EXPECT_EQ(with_eos.input_ids.back(), aidreams().special_ids().eos);
  EXPECT_EQ(with_eos.labels.back(), aidreams().special_ids().eos);  // the model learns to stop
  options.add_eos = false;
  options.add_special_tokens = false;
  const SftSample bare = qlora::data::tokenize_sft_record(records[0], alpaca, aidreams(), options);
  EXPECT_EQ(std::vector<int64_t>(with_eos.input_ids.begin() + 1, with_eos.input_ids.end() - 1),
            bare.input_ids);
}

// Packing: no sample crosses a row, segment ids count samples from 0, ids are conserved in order,
// labels are preserved except the first of each sample, rows respect max_seq_length.
TEST(Sft, PackingInvariants) {
  constexpr size_t kRow = 512;  // several fixture samples per row; none longer
  for (const std::string name : {"alpaca_full", "chatml_full", "llama2_full", "llama2_inputs"}) {
    SCOPED_TRACE(name);
    const Json& c = expected_case(name);
    const auto plain = build(c);
    Json packed_case = c;
    packed_case["max_seq_length"] = kRow;
    const auto unpacked = build(packed_case);  // the same samples: none is longer than kRow
    ASSERT_EQ(unpacked.samples.size(), plain.samples.size());
    const auto packed = build(packed_case, /*packing=*/true);
    EXPECT_EQ(packed.stats.samples, unpacked.stats.samples);
    EXPECT_EQ(packed.stats.rows, static_cast<int64_t>(packed.samples.size()));
    EXPECT_LT(packed.stats.rows, packed.stats.samples);  // packing packed something

    size_t next = 0;  // the next unpacked sample expected
    int64_t total = 0;
    for (const SftSample& row : packed.samples) {
      ASSERT_EQ(row.input_ids.size(), row.labels.size());
      ASSERT_EQ(row.input_ids.size(), row.segment_ids.size());
      ASSERT_LE(row.input_ids.size(), kRow);
      total += static_cast<int64_t>(row.input_ids.size());
      size_t pos = 0;
      int64_t segment = 0;
      while (pos < row.input_ids.size()) {
        ASSERT_LT(next, unpacked.samples.size());
        const SftSample& sample = unpacked.samples[next++];
        const size_t n = sample.input_ids.size();
        ASSERT_LE(pos + n, row.input_ids.size());  // the whole sample is in this row
        for (size_t j = 0; j < n; ++j) {
          EXPECT_EQ(row.input_ids[pos + j], sample.input_ids[j]);
          EXPECT_EQ(row.segment_ids[pos + j], segment);
          EXPECT_EQ(row.labels[pos + j], j == 0 ? kIgnoreIndex : sample.labels[j]);
        }
        pos += n;
        ++segment;
      }
    }
    EXPECT_EQ(next, unpacked.samples.size());
    EXPECT_EQ(total, unpacked.stats.tokens);
    // Greedy: a row is closed only because the next sample did not fit.
    for (size_t r = 0, s = 0; r + 1 < packed.samples.size(); ++r) {
      s += static_cast<size_t>(packed.samples[r].segment_ids.back() + 1);
      EXPECT_GT(packed.samples[r].input_ids.size() + unpacked.samples[s].input_ids.size(), kRow);
    }
  }
}

TEST(Sft, PackRejectsOverlongSample) {
  SftSample sample{{1, 2, 3}, {1, 2, 3}, {}};
  EXPECT_CONTAINS(error_of([&] { qlora::data::pack_sft_samples({sample}, 2); }),
                  "more than max_seq_length 2");
}

// --- records ---------------------------------------------------------------------------------------

std::string read_error(const std::string& text, qlora::data::SftFormat format = qlora::data::SftFormat::kAuto,
                       const std::string& name = "bad.jsonl") {
  ScratchDir dir;
  const std::string path = write_text(dir.path(name), text);
  const std::string message = error_of([&] { qlora::data::read_sft_records(path, format); });
  EXPECT_CONTAINS(message, path);
  return message;
}

TEST(SftRecords, DetectsFormatFromFirstRecord) {
  ScratchDir dir;
  const auto chat = qlora::data::read_sft_records(fixture("sft/chat.jsonl"));
  ASSERT_EQ(chat.size(), 10u);
  EXPECT_EQ(chat[1].format, qlora::data::SftFormat::kChat);
  EXPECT_EQ(chat[1].messages[0].role, "system");
  EXPECT_EQ(chat[1].place, fixture("sft/chat.jsonl") + ":2");
  const auto pr = qlora::data::read_sft_records(fixture("sft/prompt_response.jsonl"));
  EXPECT_EQ(pr[0].format, qlora::data::SftFormat::kPromptResponse);
  EXPECT_EQ(pr[0].instruction, "Thủ đô của Việt Nam là gì?");
  const std::string array = write_text(
      dir.path("a.json"), R"([{"instruction": "x", "output": "y"}, {"instruction": "z", "output": "w"}])");
  const auto alpaca = qlora::data::read_sft_records(array);
  ASSERT_EQ(alpaca.size(), 2u);
  EXPECT_EQ(alpaca[1].place, array + ": [1]");
  EXPECT_EQ(alpaca[1].as_messages()[0].content, "z");
}

TEST(SftRecords, MissingKeyNamesLineAndKey) {
  const std::string message = read_error(
      "{\"instruction\": \"a\", \"output\": \"b\"}\n\n{\"instruction\": \"a\", \"ouput\": \"b\"}\n");
  EXPECT_CONTAINS(message, "bad.jsonl:3: missing key \"output\"");
  EXPECT_CONTAINS(message, "is \"ouput\" a misspelling of \"output\"?");
}

TEST(SftRecords, UnknownFirstRecordShape) {
  const std::string message = read_error("{\"mesages\": []}\n");
  EXPECT_CONTAINS(message, "bad.jsonl:1: cannot tell the record format");
  EXPECT_CONTAINS(message, "\"mesages\" a misspelling of \"messages\"");
}

TEST(SftRecords, BadMessages) {
  EXPECT_CONTAINS(read_error("{\"messages\": [{\"role\": \"usr\", \"content\": \"a\"}]}\n"),
                  "bad.jsonl:1: messages[0]: unknown role \"usr\" (did you mean 'user'?)");
  EXPECT_CONTAINS(read_error("{\"messages\": [{\"role\": \"user\", \"contnt\": \"a\"}]}\n"),
                  "bad.jsonl:1: messages[0]: missing key \"content\"");
  EXPECT_CONTAINS(read_error("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n"),
                  "bad.jsonl:1: the conversation has no assistant message");
  EXPECT_CONTAINS(read_error("{\"messages\": \"hi\"}\n"),
                  "bad.jsonl:1: field \"messages\" must be a non-empty array");
  EXPECT_CONTAINS(read_error("{\"messages\": [{\"role\": \"user\", \"content\": 3}]}\n"),
                  "messages[0]: field \"content\" must be a string");
}

TEST(SftRecords, ForcedFormatAndBadValues) {
  EXPECT_CONTAINS(read_error("{\"prompt\": \"a\", \"response\": \"b\"}\n", qlora::data::SftFormat::kAlpaca),
                  "bad.jsonl:1: missing key \"instruction\" of a alpaca record");
  EXPECT_CONTAINS(read_error("{\"instruction\": \"a\", \"output\": \" \"}\n"),
                  "bad.jsonl:1: field \"output\" is empty");
  EXPECT_CONTAINS(
      read_error("[{\"prompt\": \"a\", \"response\": 5}]", qlora::data::SftFormat::kAuto, "bad.json"),
      "bad.json: [0]: field \"response\" must be a string");
  EXPECT_CONTAINS(error_of([] { qlora::data::parse_sft_format("alpacca"); }), "did you mean 'alpaca'");
}

TEST(SftRecords, TemplateMismatchNamesRecord) {
  const auto chat = qlora::data::read_sft_records(fixture("sft/chat.jsonl"));
  const std::string message = error_of([&] {
    qlora::data::build_sft_dataset(chat, PromptTemplate::named("alpaca"), aidreams(), SftOptions{});
  });
  // chat.jsonl:2 is the first record with a system message.
  EXPECT_CONTAINS(message, fixture("sft/chat.jsonl") + ":2: prompt template alpaca is single-turn");
}

// Real Vietnamese Alpaca data when ../shared is present: every record tokenizes, counts add up, and
// the unmasked labels are exactly the response tokens of full-length samples.
TEST(SftShared, ViAlpacaAddsUp) {
  const std::string path = shared_data("instruct/vi-alpaca-gpt4vn/vi_alpaca_2k.alpaca.json");
  if (path.empty()) GTEST_SKIP() << "../shared/data/instruct/vi-alpaca-gpt4vn is absent";
  const auto records = qlora::data::read_sft_records(path);
  ASSERT_EQ(records.size(), 2000u);
  SftOptions options;
  options.max_seq_length = 256;
  const auto dataset =
      qlora::data::build_sft_dataset(records, PromptTemplate::named("alpaca"), aidreams(), options);
  EXPECT_EQ(dataset.stats.samples + dataset.stats.dropped, 2000);
  EXPECT_GT(dataset.stats.samples, 0);
  const int64_t tokens =
      std::accumulate(dataset.samples.begin(), dataset.samples.end(), int64_t{0},
                      [](int64_t n, const SftSample& s) { return n + s.input_ids.size(); });
  EXPECT_EQ(tokens, dataset.stats.tokens);
  options.packing = true;
  const auto packed =
      qlora::data::build_sft_dataset(records, PromptTemplate::named("alpaca"), aidreams(), options);
  EXPECT_LT(packed.stats.rows, packed.stats.samples);
  std::cout << "vi_alpaca_2k @256: samples " << dataset.stats.samples << ", truncated "
            << dataset.stats.truncated << ", dropped " << dataset.stats.dropped << ", tokens "
            << dataset.stats.tokens << ", packed rows " << packed.stats.rows << "\n";
}

}  // namespace
