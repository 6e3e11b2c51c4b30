// config.json / generation_config.json, against the files transformers wrote for the tiny Llama.
#include "io/io_test_util.h"
#include "qlora/io/hf_config.h"

namespace qlora::test {
namespace {

const Json& llama() { return expected_json().at("tiny_llama"); }

HfConfig config_from(const std::string& text) { return HfConfig(Json::parse(text), "inline/config.json"); }

TEST(HfConfig, ReadsTheTransformersConfig) {
  const HfConfig config = HfConfig::load(io_fixture("tiny_llama"));
  const Json& expected = llama().at("config");
  EXPECT_EQ(config.model_type(), expected.at("model_type").get<std::string>());
  EXPECT_EQ(config.get_int("hidden_size"), expected.at("hidden_size").get<int64_t>());
  EXPECT_EQ(config.get_int("num_attention_heads"), expected.at("num_attention_heads").get<int64_t>());
  EXPECT_EQ(config.get_int("vocab_size"), expected.at("vocab_size").get<int64_t>());
  EXPECT_EQ(config.get_float("rms_norm_eps"), expected.at("rms_norm_eps").get<double>());
  EXPECT_EQ(config.get_bool("tie_word_embeddings"), expected.at("tie_word_embeddings").get<bool>());
  EXPECT_EQ(config.sub("rope_parameters").get_float("rope_theta"), llama().at("rope_theta").get<double>());
  EXPECT_EQ(config.json().at("architectures"), expected.at("architectures"));
  EXPECT_EQ(HfConfig::load(io_fixture("tiny_llama/config.json")).get_int("hidden_size"),
            config.get_int("hidden_size"));
}

TEST(HfConfig, IntegersAreNumbersButNotTheOtherWayRound) {
  const HfConfig config = config_from(R"({"n": 16, "x": 0.5, "big": 18446744073709551615})");
  EXPECT_EQ(config.get_float("n"), 16.0);
  expect_error([&] { config.get_int("x"); }, {"inline/config.json", "'x'", "an integer", "0.5"});
  expect_error([&] { config.get_int("big"); }, {"inline/config.json", "'big'", "an integer"});
}

TEST(HfConfig, WrongTypeNamesFileKeyAndType) {
  const HfConfig config = HfConfig::load(io_fixture("tiny_llama"));
  expect_error([&] { config.get_int("model_type"); },
               {"tiny_llama/config.json", "'model_type'", "an integer", "llama"});
  expect_error([&] { config.get_string("hidden_size"); }, {"config.json", "'hidden_size'", "a string"});
  expect_error([&] { config.get_bool("hidden_size"); }, {"config.json", "'hidden_size'", "true or false"});
  expect_error([&] { config.get_float("hidden_act"); }, {"config.json", "'hidden_act'", "a number"});
  EXPECT_EQ(config.get_int("hidden_size_typo", 3), 3);
}

TEST(HfConfig, MissingKeySuggestsTheNearestOne) {
  const HfConfig config = HfConfig::load(io_fixture("tiny_llama"));
  expect_error([&] { config.get_int("hidden_sise"); },
               {"tiny_llama/config.json", "missing key 'hidden_sise'", "did you mean 'hidden_size'"});
  expect_error([&] { config.sub("rope_parameters").get_float("rope_thet"); },
               {"config.json", "'rope_parameters.rope_thet'", "did you mean 'rope_theta'"});
  expect_error([&] { config.sub("hidden_size"); }, {"config.json", "'hidden_size'", "an object"});
}

TEST(HfConfig, DefaultsApplyOnlyWhenAbsentOrNull) {
  const HfConfig config = config_from(R"({"sliding_window": null, "window": "wide", "n": 4})");
  EXPECT_FALSE(config.has("sliding_window"));
  EXPECT_FALSE(config.has("absent"));
  EXPECT_TRUE(config.has("n"));
  EXPECT_EQ(config.get_int("sliding_window", 4096), 4096);
  EXPECT_EQ(config.get_int("absent", 7), 7);
  EXPECT_EQ(config.get_int("n", 7), 4);
  EXPECT_EQ(config.get_float("absent", 0.25), 0.25);
  EXPECT_EQ(config.get_string("absent", "x"), "x");
  EXPECT_TRUE(config.get_bool("absent", true));
  EXPECT_FALSE(config.find_int("sliding_window").has_value());
  EXPECT_EQ(config.find_float("n"), 4.0);
  expect_error([&] { config.get_int("sliding_window"); }, {"'sliding_window'", "null"});
  expect_error([&] { config.get_int("window", 3); }, {"inline/config.json", "'window'", "an integer"});
}

TEST(HfConfig, LoadErrors) {
  ScratchDir dir;
  expect_error([&] { HfConfig::load(dir.str()); }, {dir.file("config.json"), "no such file"});
  write_file_atomic(dir.file("config.json"), "[1, 2]");
  expect_error([&] { HfConfig::load(dir.str()); }, {dir.file("config.json"), "object"});
  write_file_atomic(dir.file("config.json"), "{\"a\": 1,\n \"b\": }");
  expect_error([&] { HfConfig::load(dir.str()); }, {dir.file("config.json") + ":2"});
}

TEST(GenerationConfig, ReadsTheTransformersFile) {
  const GenerationConfig g = GenerationConfig::load(io_fixture("tiny_llama"));
  const Json& expected = llama().at("generation");
  EXPECT_EQ(g.bos_token_id, expected.at("bos_token_id").get<int64_t>());
  EXPECT_EQ(g.eos_token_ids, expected.at("eos_token_id").get<std::vector<int64_t>>());
  EXPECT_EQ(g.pad_token_id, expected.at("pad_token_id").get<int64_t>());
  EXPECT_EQ(g.do_sample, expected.at("do_sample").get<bool>());
  EXPECT_EQ(g.temperature, expected.at("temperature").get<double>());
  EXPECT_EQ(g.top_k, expected.at("top_k").get<int64_t>());
  EXPECT_EQ(g.top_p, expected.at("top_p").get<double>());
  EXPECT_EQ(g.max_new_tokens, expected.at("max_new_tokens").get<int64_t>());
  EXPECT_EQ(g.repetition_penalty, expected.at("repetition_penalty").get<double>());
  EXPECT_FALSE(g.decoder_start_token_id.has_value());
}

TEST(GenerationConfig, DefaultsMatchTransformers) {
  const Json& d = expected_json().at("generation_defaults");
  for (const GenerationConfig& g : {GenerationConfig{}, GenerationConfig::from_json(config_from("{}"))}) {
    EXPECT_EQ(g.max_length, d.at("max_length").get<int64_t>());
    EXPECT_EQ(g.do_sample, d.at("do_sample").get<bool>());
    EXPECT_EQ(g.early_stopping == GenerationConfig::EarlyStopping::kTrue, d.at("early_stopping").get<bool>());
    EXPECT_EQ(g.num_beams, d.at("num_beams").get<int64_t>());
    EXPECT_EQ(g.temperature, d.at("temperature").get<double>());
    EXPECT_EQ(g.top_k, d.at("top_k").get<int64_t>());
    EXPECT_EQ(g.top_p, d.at("top_p").get<double>());
    EXPECT_EQ(g.repetition_penalty, d.at("repetition_penalty").get<double>());
    EXPECT_EQ(g.length_penalty, d.at("length_penalty").get<double>());
    EXPECT_EQ(g.no_repeat_ngram_size, d.at("no_repeat_ngram_size").get<int64_t>());
    EXPECT_FALSE(g.max_new_tokens.has_value());
    EXPECT_TRUE(g.eos_token_ids.empty());
  }
}

TEST(GenerationConfig, FieldVariants) {
  GenerationConfig g = GenerationConfig::from_json(config_from(
      R"({"eos_token_id": 1, "early_stopping": "never", "decoder_start_token_id": [0], "pad_token_id": null,
          "num_beams": 4, "length_penalty": 0.6, "no_repeat_ngram_size": 3, "max_length": 128})"));
  EXPECT_EQ(g.eos_token_ids, std::vector<int64_t>{1});
  EXPECT_EQ(g.early_stopping, GenerationConfig::EarlyStopping::kNever);
  EXPECT_EQ(g.decoder_start_token_id, 0);
  EXPECT_FALSE(g.pad_token_id.has_value());
  EXPECT_EQ(g.num_beams, 4);
  EXPECT_EQ(g.length_penalty, 0.6);
  EXPECT_EQ(g.no_repeat_ngram_size, 3);
  EXPECT_EQ(g.max_length, 128);
  g = GenerationConfig::from_json(config_from(R"({"early_stopping": true})"));
  EXPECT_EQ(g.early_stopping, GenerationConfig::EarlyStopping::kTrue);
  expect_error([] { GenerationConfig::from_json(config_from(R"({"temperature": "hot"})")); },
               {"inline/config.json", "'temperature'", "a number"});
  expect_error([] { GenerationConfig::from_json(config_from(R"({"eos_token_id": [2, "x"]})")); },
               {"'eos_token_id'", "list of integers"});
  expect_error([] { GenerationConfig::from_json(config_from(R"({"early_stopping": "sometimes"})")); },
               {"'early_stopping'", "never"});
}

TEST(GenerationConfig, FallsBackToConfigTokenIds) {
  ScratchDir dir;
  copy_file(io_fixture("tiny_llama/config.json"), dir.file("config.json"));
  const GenerationConfig g = GenerationConfig::load(dir.str());
  const HfConfig config = HfConfig::load(dir.str());
  EXPECT_EQ(g.bos_token_id, config.get_int("bos_token_id"));
  EXPECT_EQ(g.eos_token_ids, std::vector<int64_t>{config.get_int("eos_token_id")});
  EXPECT_EQ(g.pad_token_id, config.get_int("pad_token_id"));
  EXPECT_FALSE(g.do_sample);
}

}  // namespace
}  // namespace qlora::test
