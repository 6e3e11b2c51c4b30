// adapter_config.json: PEFT's bytes, field types, unknown keys, the run-config converter.
#include <gtest/gtest.h>

#include "peft/peft_test_util.h"
#include "qlora/config/run_config.h"
#include "qlora/core/error.h"

namespace qlora::peft {
namespace {

using testing::peft_cases;
using testing::peft_fixture;

// Expects `f` to throw an Error whose message holds every string of `parts`.
template <typename F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no Error thrown; expected one mentioning " << parts.front();
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(LoraConfigJson, DefaultsAreByteIdenticalToPeft) {
  // LoraConfig().save_pretrained(): every PEFT 0.21.2 field with its default; inference_mode false and
  // no auto_mapping, since PeftConfig.save_pretrained (not PeftModel's) wrote it.
  const std::string expected = read_file(peft_fixture("default/adapter_config.json"));
  EXPECT_EQ(lora_config_to_json(LoraConfig{}), expected);
  const Json parsed = Json::parse(expected);
  EXPECT_EQ(parsed.size(), 41u);  // PEFT 0.21.2's LoraConfig fields, runtime_config dropped
}

TEST(LoraConfigJson, EveryPeftWrittenConfigRoundTripsByteForByte) {
  for (const std::string& name : peft_cases()) {
    const std::string path = peft_fixture(name + "/adapter_config.json");
    const std::string text = read_file(path);
    const LoraConfig c = lora_config_from_json(text, path);
    EXPECT_EQ(lora_config_to_json(c), text) << name;
  }
}

TEST(LoraConfigJson, ReadsTypedFields) {
  const LoraConfig c = read_lora_config(peft_fixture("patterns/adapter_config.json"));
  EXPECT_EQ(c.r, 4);
  EXPECT_EQ(c.lora_alpha, 8);
  ASSERT_TRUE(c.target_modules.is_list());
  EXPECT_EQ(testing::sorted(c.target_modules.names),
            (std::vector<std::string>{"dense", "key", "query", "value"}));
  EXPECT_EQ(c.exclude_modules.names, std::vector<std::string>{"intermediate.dense"});
  ASSERT_EQ(c.rank_pattern.size(), 2u);
  EXPECT_EQ(c.rank_pattern[0].first, "layer\\.1\\.attention\\.self\\.query");
  EXPECT_EQ(c.rank_pattern[0].second, 6);
  ASSERT_EQ(c.alpha_pattern.size(), 2u);
  EXPECT_EQ(c.alpha_pattern[1].second, 5.5);
  EXPECT_TRUE(c.inference_mode);  // save_pretrained forces it
  EXPECT_FALSE(c.task_type.has_value());
  EXPECT_EQ(c.auto_mapping.at("base_model_class"), "XLMRobertaForQuestionAnswering");

  const LoraConfig layers = read_lora_config(peft_fixture("layers_int/adapter_config.json"));
  ASSERT_TRUE(layers.layers_to_transform.has_value());
  EXPECT_EQ(*layers.layers_to_transform, std::vector<int64_t>{0});
  EXPECT_TRUE(layers.layers_to_transform_is_int);
  const LoraConfig rs = read_lora_config(peft_fixture("rslora/adapter_config.json"));
  EXPECT_TRUE(rs.use_rslora);
  EXPECT_EQ(rs.init_lora_weights, "gaussian");
  EXPECT_DOUBLE_EQ(rs.lora_dropout, 0.1);
  const LoraConfig regex = read_lora_config(peft_fixture("regex/adapter_config.json"));
  EXPECT_TRUE(regex.target_modules.is_string());
  EXPECT_EQ(read_lora_config(peft_fixture("bias_lora_only/adapter_config.json")).bias, LoraBias::kLoraOnly);
}

TEST(LoraConfigJson, UnknownKeysOfOtherPeftVersionsAreDropped) {
  Json j = Json::parse(read_file(peft_fixture("list/adapter_config.json")));
  j["use_future_thing"] = true;
  j["runtime_config"] = {{"ephemeral_gpu_offload", false}};  // known to PEFT, never written
  const LoraConfig c = lora_config_from_json(j.dump(), "x/adapter_config.json");
  EXPECT_EQ(c.r, 4);
  EXPECT_EQ(lora_config_to_json(c), read_file(peft_fixture("list/adapter_config.json")));
}

TEST(LoraConfigJson, OlderFilesWithMissingFieldsGetDefaults) {
  const LoraConfig c =
      lora_config_from_json(R"({"peft_type": "LORA", "r": 16, "target_modules": ["q_proj"]})", "f");
  EXPECT_EQ(c.r, 16);
  EXPECT_EQ(c.lora_alpha, 8);
  EXPECT_EQ(c.bias, LoraBias::kNone);
  EXPECT_FALSE(c.modules_to_save.has_value());
}

TEST(LoraConfigJson, WrongTypesNameTheFileAndKey) {
  const std::string f = "adapters/a/adapter_config.json";
  const auto parse = [&](const std::string& text) { return [text, f] { lora_config_from_json(text, f); }; };
  expect_error(parse(R"({"r": "8"})"), {f, "'r'", "an integer", "string"});
  expect_error(parse(R"({"r": 8.5})"), {f, "'r'", "a float"});
  expect_error(parse(R"({"lora_alpha": "x"})"), {f, "'lora_alpha'"});
  expect_error(parse(R"({"target_modules": 5})"), {f, "'target_modules'"});
  expect_error(parse(R"({"target_modules": ["q", 1]})"), {f, "'target_modules[1]'"});
  expect_error(parse(R"({"bias": "some"})"), {f, "'bias'", "lora_only"});
  expect_error(parse(R"({"use_rslora": "yes"})"), {f, "'use_rslora'"});
  expect_error(parse(R"({"rank_pattern": {"q": "4"}})"), {f, "'rank_pattern.q'"});
  expect_error(parse(R"({"layers_to_transform": "1"})"), {f, "'layers_to_transform'"});
  expect_error(parse(R"({"modules_to_save": "qa_outputs"})"), {f, "'modules_to_save'"});
  expect_error(parse(R"({"init_lora_weights": 1})"), {f, "'init_lora_weights'"});
  expect_error(parse(R"({"r": 0})"), {f, "'r'", "positive"});
  expect_error(parse(R"({"lora_dropout": 1.5})"), {f, "'lora_dropout'"});
  expect_error(parse(R"({"r": 8,)"), {f, "malformed JSON"});
  expect_error(parse(R"([1, 2])"), {f, "JSON object"});
}

TEST(LoraConfigJson, UnsupportedPeftFeaturesAreRejectedByKey) {
  const std::string f = "a/adapter_config.json";
  expect_error([&] { check_supported(lora_config_from_json(R"({"use_dora": true})", f), f); },
               {f, "'use_dora'"});
  expect_error([&] { check_supported(lora_config_from_json(R"({"lora_bias": true})", f), f); },
               {f, "'lora_bias'"});
  expect_error([&] { check_supported(lora_config_from_json(R"({"layer_replication": [[0, 1]]})", f), f); },
               {f, "'layer_replication'"});
  expect_error([&] { check_supported(lora_config_from_json(R"({"peft_type": "IA3"})", f), f); },
               {f, "'peft_type'"});
  // Init-only settings of other methods do not change a saved adapter's math.
  check_supported(lora_config_from_json(R"({"init_lora_weights": "pissa", "loftq_config": {}})", f), f);
}

TEST(LoraConfigJson, FromRunConfigSection) {
  config::AdapterSection s;  // r 8, alpha 16, dropout 0.05, PEFT's default targets, qa_outputs saved
  LoraConfig c = lora_config_from_section(s);
  EXPECT_EQ(c.r, 8);
  EXPECT_EQ(c.lora_alpha, 16);
  EXPECT_DOUBLE_EQ(c.lora_dropout, 0.05);
  EXPECT_TRUE(c.target_modules.is_null());  // resolved by attach_lora from the model type, as PEFT does
  s.target_modules = {"query", "value"};
  c = lora_config_from_section(s);
  EXPECT_EQ(c.target_modules, NameSpec::list({"query", "value"}));
  ASSERT_TRUE(c.modules_to_save.has_value());
  EXPECT_EQ(*c.modules_to_save, std::vector<std::string>{"qa_outputs"});
  EXPECT_EQ(c.init_lora_weights, "true");

  s.target_regex = R"(.*\.query)";
  s.modules_to_save.clear();
  s.init = "gaussian";
  s.bias = "lora_only";
  s.use_rslora = true;
  c = lora_config_from_section(s);
  EXPECT_EQ(c.target_modules, NameSpec::string(R"(.*\.query)"));
  EXPECT_FALSE(c.modules_to_save.has_value());
  EXPECT_EQ(c.init_lora_weights, "gaussian");
  EXPECT_EQ(c.bias, LoraBias::kLoraOnly);
  EXPECT_TRUE(c.use_rslora);

  s.target_regex.clear();
  s.target_modules = {"all-linear"};
  EXPECT_EQ(lora_config_from_section(s).target_modules, NameSpec::string("all-linear"));
  s.bias = "some";
  EXPECT_THROW(lora_config_from_section(s), Error);
}

}  // namespace
}  // namespace qlora::peft
