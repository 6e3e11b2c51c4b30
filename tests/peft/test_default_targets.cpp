// PEFT's default target_modules: a LoraConfig with target_modules null adapts what PEFT 0.21.2 adapts for
// the model type (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING), and the saved adapter_config.json
// holds the resolved list, as PEFT's does. Oracle: tests/fixtures/peft/default_targets/<model>/, written
// by tools/gen_default_targets_fixtures.py from get_peft_model(model, LoraConfig(r=2, lora_alpha=4)).
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../error_of.h"
#include "peft_test_util.h"
#include "qlora/config/run_config.h"
#include "qlora/core/error.h"
#include "qlora/models/causal_lm.h"
#include "qlora/models/t5.h"

namespace qlora::peft {
namespace {

using testing::json_strings;
using testing::read_json;

std::string case_dir(const std::string& model) { return testing::peft_fixture("default_targets/" + model); }

std::set<std::string> as_set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

LoraConfig default_config() {
  LoraConfig c;  // target_modules null
  c.r = 2;
  c.lora_alpha = 4;
  return c;
}

// attach_lora with null targets on `view` adapts PEFT's modules, in model order, and save_adapter writes
// PEFT's resolved set.
void expect_peft_defaults(const std::string& model, PeftModelView& view) {
  const Json info = read_json(case_dir(model) + "/peft_info.json");
  EXPECT_EQ(view.model_type, info.at("model_type").get<std::string>()) << model;
  const LoraSummary s = attach_lora(view, default_config(), 0);
  EXPECT_EQ(s.adapted, json_strings(info.at("adapted_modules"))) << model;
  ASSERT_TRUE(s.config.target_modules.is_list()) << model;
  const std::set<std::string> expected = as_set(json_strings(info.at("target_modules")));
  EXPECT_EQ(as_set(s.config.target_modules.names), expected) << model;

  const std::string dir = ::testing::TempDir() + "/default_targets_" + model;
  save_adapter(dir, view, s);
  const Json ours = read_json(dir + "/" + kAdapterConfigName);
  const Json peft = read_json(case_dir(model) + "/" + kAdapterConfigName);
  ASSERT_TRUE(ours.at("target_modules").is_array()) << model;
  EXPECT_EQ(as_set(json_strings(ours.at("target_modules"))), as_set(json_strings(peft.at("target_modules"))))
      << model;
}

TEST(DefaultTargets, EncoderGetsPeftsDefaults) {
  models::EncoderModel model = testing::load_qa_model();
  PeftModelView view = peft_view(model);
  expect_peft_defaults("tiny-xlmr-qa", view);
}

TEST(DefaultTargets, DecodersGetPeftsDefaults) {
  for (const std::string name : {"llama_llama3", "mistral_sw", "qwen2_tied", "mpt_hf"}) {
    auto model = models::load_causal_lm(models::testing::model_dir(name));
    PeftModelView view = peft_view(*model);
    expect_peft_defaults(name, view);
  }
}

TEST(DefaultTargets, T5GetsPeftsDefaults) {
  models::T5Model model = models::load_t5(models::testing::model_dir("t5_v1_1"));
  PeftModelView view = peft_view(model);
  expect_peft_defaults("t5_v1_1", view);
}

// A model type PEFT's table lacks: PEFT raises "Please specify `target_modules`", so does attach_lora.
TEST(DefaultTargets, UnknownModelTypeIsAnError) {
  models::EncoderModel model = testing::load_qa_model();
  PeftModelView view = peft_view(model);
  view.model_type = "not-a-model";
  const std::string err = qlora_test::error_of([&] { attach_lora(view, default_config(), 0); });
  EXPECT_NE(err.find("not-a-model"), std::string::npos) << err;
  EXPECT_NE(err.find("target_modules"), std::string::npos) << err;
}

// Only null means "default" in PEFT: an empty list in a LoraConfig matches nothing.
TEST(DefaultTargets, EmptyListInAnAdapterConfigMatchesNothing) {
  models::EncoderModel model = testing::load_qa_model();
  PeftModelView view = peft_view(model);
  LoraConfig c = default_config();
  c.target_modules = NameSpec::list({});
  EXPECT_THROW(attach_lora(view, c, 0), Error);
}

TEST(DefaultTargets, TableHasPeftsEntries) {
  EXPECT_EQ(peft_default_target_modules("mt5")->names, (std::vector<std::string>{"q", "v"}));
  EXPECT_EQ(peft_default_target_modules("roberta")->names, (std::vector<std::string>{"query", "value"}));
  EXPECT_EQ(peft_default_target_modules("bert")->names, (std::vector<std::string>{"query", "value"}));
  EXPECT_TRUE(peft_default_target_modules("gemma4")->is_string());  // PEFT's one regex entry
  EXPECT_FALSE(peft_default_target_modules("bogus").has_value());
}

// The run config's `adapter.target_modules: []` is PEFT's default for the model.
TEST(DefaultTargets, RunConfigEmptyTargetsMeanPeftsDefault) {
  config::AdapterSection section;
  section.target_modules.clear();
  const LoraConfig c = lora_config_from_section(section);
  EXPECT_TRUE(c.target_modules.is_null());
  models::EncoderModel model = testing::load_qa_model();
  PeftModelView view = peft_view(model);
  const LoraSummary s = attach_lora(view, c, 0);
  const Json info = read_json(case_dir("tiny-xlmr-qa") + "/peft_info.json");
  EXPECT_EQ(s.adapted, json_strings(info.at("adapted_modules")));
}

}  // namespace
}  // namespace qlora::peft
