// Adapters written by qlora load in real PEFT with the same outputs.
//
// tests/fixtures/peft/cpp_written/<case>/ holds the adapter this test writes (deterministic: fixed seed
// and sin-wave tensor values, no RNG) and peft_check.json, what tools/check_peft_load.py printed for it
// (PEFT 0.21.2's adapted modules, load warnings, and logits with the adapter and after merge_and_unload).
// The test re-writes each adapter, requires the committed bytes (so peft_check.json is about this very
// writer output), then requires qlora's logits to equal PEFT's. To regenerate after a deliberate format
// change, from the repository root:
//   QLORA_REGEN_PEFT_FIXTURES=1 build-peft/tests/test_peft --gtest_filter='PeftInterop.*'
//   for c in tests/fixtures/peft/cpp_written/*/; do
//     /root/.cache/qlora/venv/bin/python tools/check_peft_load.py $c > $c/peft_check.json; done
#include <gtest/gtest.h>

#include <cstdlib>

#include "peft/peft_test_util.h"

namespace qlora::peft {
namespace {

using testing::expect_close;
using testing::json_strings;
using testing::peft_fixture;
using testing::TempDir;

struct InteropCase {
  std::string name;
  std::string config_json;  // adapter_config.json-style fields
};

// One adapter per feature family: list targets + rank/alpha patterns + a saved head + lora_only biases;
// all-linear on the QA task (head auto-saved) with rsLoRA and layer filtering by regex exclusion.
const std::vector<InteropCase>& interop_cases() {
  static const std::vector<InteropCase> cases = {
      {"list_patterns_head",
       R"({"r": 4, "lora_alpha": 8, "target_modules": ["query", "value", "output.dense"],
           "rank_pattern": {"value": 2}, "alpha_pattern": {"layer\\.1\\.output\\.dense": 3},
           "modules_to_save": ["qa_outputs"], "bias": "lora_only",
           "base_model_name_or_path": "tests/fixtures/models/tiny-xlmr-qa"})"},
      {"all_linear_qa_rslora",
       R"({"r": 2, "lora_alpha": 4, "target_modules": "all-linear", "task_type": "QUESTION_ANS",
           "modules_to_save": ["qa_outputs"], "use_rslora": true, "exclude_modules": ".*layer\\.0\\.intermediate.*",
           "lora_dropout": 0.05, "base_model_name_or_path": "tests/fixtures/models/tiny-xlmr-qa"})"},
  };
  return cases;
}

// Attaches the case to `model` and gives every saved tensor a distinct deterministic value.
LoraSummary build(models::EncoderModel& model, const InteropCase& c) {
  PeftModelView view = peft_view(model);
  const LoraSummary s = attach_lora(view, lora_config_from_json(c.config_json, c.name), 0);
  double phase = 0;
  for (const AdapterTensor& t : s.trainable) testing::fill_wave(*t.tensor, 0.15, phase += 0.7);
  return s;
}

std::vector<double> flat(const Json& nested) {
  std::vector<double> out;
  for (const Json& row : nested) {
    for (const Json& v : row) out.push_back(v.get<double>());
  }
  return out;
}

at::Tensor as_tensor(const Json& nested, at::IntArrayRef shape) {
  const std::vector<double> v = flat(nested);
  return at::tensor(v, at::kDouble).reshape(shape).to(at::kFloat);
}

TEST(PeftInterop, QloraWrittenAdaptersLoadInPeftWithTheSameOutputs) {
  const bool regen = std::getenv("QLORA_REGEN_PEFT_FIXTURES") != nullptr;
  TempDir tmp;
  const models::EncoderInputs in = testing::padded_inputs();
  for (const InteropCase& c : interop_cases()) {
    const std::string committed = peft_fixture("cpp_written/" + c.name);
    models::EncoderModel model = testing::load_qa_model();
    const LoraSummary s = build(model, c);
    const std::string out = regen ? committed : tmp.sub(c.name);
    save_adapter(out, peft_view(model), s);
    if (regen) {
      std::printf("wrote %s; now run tools/check_peft_load.py on it\n", out.c_str());
      continue;
    }
    for (const char* file : {kAdapterConfigName, kAdapterWeightsName}) {
      EXPECT_EQ(read_file(out + "/" + file), read_file(committed + "/" + file)) << c.name << " " << file;
    }
    const Json check = testing::read_json(committed + "/peft_check.json");
    EXPECT_EQ(json_strings(check.at("load_warnings")), std::vector<std::string>{}) << c.name;
    EXPECT_EQ(json_strings(check.at("adapted_modules")), testing::sorted(s.adapted)) << c.name;
    EXPECT_EQ(json_strings(check.at("modules_to_save")), testing::sorted(s.modules_to_save)) << c.name;

    // Our model as written vs PEFT's load of the same files.
    const models::QaLogits ours = models::qa_forward(model, in, {});
    const at::IntArrayRef shape = ours.start.sizes();
    expect_close(c.name + " start_logits vs PEFT", ours.start,
                 as_tensor(check["adapter"]["start_logits"], shape), 1e-5);
    expect_close(c.name + " end_logits vs PEFT", ours.end, as_tensor(check["adapter"]["end_logits"], shape),
                 1e-5);
    PeftModelView view = peft_view(model);
    merge_and_unload(view);
    const models::QaLogits merged = models::qa_forward(model, in, {});
    expect_close(c.name + " merged start vs PEFT", merged.start,
                 as_tensor(check["merged"]["start_logits"], shape), 1e-5);
    expect_close(c.name + " merged end vs PEFT", merged.end, as_tensor(check["merged"]["end_logits"], shape),
                 1e-5);
  }
}

}  // namespace
}  // namespace qlora::peft
