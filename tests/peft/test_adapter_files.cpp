// Adapter folders: PEFT-written adapters give PEFT's outputs (with the adapter and merged), save -> load
// is the identity, re-saving a PEFT adapter gives PEFT's bytes, and broken folders fail by file and key.
//
// Tolerance 1e-5 on logits of magnitude ~1-5: the same float32 math as PyTorch's eager forward, with
// matmul/softmax/LayerNorm reductions possibly summed in another order (measured differences are printed).
#include <gtest/gtest.h>

#include <set>

#include "peft/peft_test_util.h"
#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"
#include "qlora/io/safetensors.h"

namespace qlora::peft {
namespace {

using testing::copy_file;
using testing::expect_close;
using testing::peft_cases;
using testing::peft_fixture;
using testing::TempDir;

template <typename F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no Error thrown; expected one mentioning " << parts.back();
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(AdapterFiles, PeftAdaptersGivePeftOutputsAndMergedOutputs) {
  const models::EncoderInputs in = testing::padded_inputs();
  for (const std::string& name : peft_cases()) {
    models::EncoderModel model = testing::load_qa_model();
    PeftModelView view = peft_view(model);
    LoadAdapterReport report;
    const LoraSummary s = load_adapter(view, peft_fixture(name), {}, &report);
    EXPECT_TRUE(report.unexpected.empty()) << name << ": " << report.unexpected.front();
    const SafetensorsFile expected = SafetensorsFile::open(peft_fixture(name + "/peft_outputs.safetensors"));
    const models::QaLogits with = models::qa_forward(model, in, {});
    expect_close(name + " adapter start_logits", with.start, expected.tensor("adapter.start_logits"), 1e-5);
    expect_close(name + " adapter end_logits", with.end, expected.tensor("adapter.end_logits"), 1e-5);
    merge_and_unload(view);
    const models::QaLogits merged = models::qa_forward(model, in, {});
    expect_close(name + " merged start_logits", merged.start, expected.tensor("merged.start_logits"), 1e-5);
    expect_close(name + " merged end_logits", merged.end, expected.tensor("merged.end_logits"), 1e-5);
    // The adapter mattered: the base model's logits are far away.
    const models::EncoderModel base = testing::load_qa_model();
    EXPECT_GT(models::testing::max_abs_diff(models::qa_forward(base, in, {}).start, with.start), 1e-2)
        << name;
  }
}

TEST(AdapterFiles, LoadedForInferenceNothingTrains) {
  models::EncoderModel model = testing::load_qa_model();
  PeftModelView view = peft_view(model);
  const LoraSummary s = load_adapter(view, peft_fixture("list"));
  EXPECT_EQ(s.trainable_params, 0);
  EXPECT_EQ(s.all_params, 52452);
  EXPECT_FALSE(model.layers[0].query.lora.A.requires_grad());
  EXPECT_FALSE(model.qa_outputs.base.weight.requires_grad());

  models::EncoderModel m2 = testing::load_qa_model();
  PeftModelView v2 = peft_view(m2);
  const LoraSummary t = load_adapter(v2, peft_fixture("list"), {/*is_trainable=*/true});
  EXPECT_EQ(t.trainable_params, 1090);  // PEFT's count for this config
  EXPECT_TRUE(m2.layers[0].query.lora.A.requires_grad());
  EXPECT_TRUE(m2.qa_outputs.base.weight.requires_grad());
  EXPECT_FALSE(m2.layers[0].query.base.weight.requires_grad());
}

TEST(AdapterFiles, ResavingAPeftAdapterGivesPeftsBytes) {
  TempDir tmp;
  for (const std::string& name : peft_cases()) {
    models::EncoderModel model = testing::load_qa_model();
    PeftModelView view = peft_view(model);
    LoadAdapterReport report;
    const LoraSummary s = load_adapter(view, peft_fixture(name), {}, &report);
    const std::string out = tmp.sub(name);
    save_adapter(out, view, s);
    EXPECT_EQ(read_file(out + "/adapter_config.json"), read_file(peft_fixture(name + "/adapter_config.json")))
        << name;
    if (report.ignored.empty()) {
      EXPECT_EQ(read_file(out + "/adapter_model.safetensors"),
                read_file(peft_fixture(name + "/adapter_model.safetensors")))
          << name;
    } else {
      // bias="all" + modules_to_save: PEFT also writes <m>.original_module.bias and <m>.modules_to_save.bias,
      // which qlora does not (see docs in lora_model.h); everything else is identical.
      ASSERT_EQ(name, "bias_all");
      const SafetensorsFile ours = SafetensorsFile::open(out + "/adapter_model.safetensors");
      const SafetensorsFile theirs = SafetensorsFile::open(peft_fixture(name + "/adapter_model.safetensors"));
      EXPECT_EQ(ours.names().size() + report.ignored.size(), theirs.names().size());
      for (const std::string& key : ours.names())
        EXPECT_TRUE(at::equal(ours.tensor(key), theirs.tensor(key))) << key;
    }
  }
}

TEST(AdapterFiles, SaveThenLoadIsTheIdentity) {
  TempDir tmp;
  const models::EncoderInputs in = testing::padded_inputs();
  for (const std::string name : {"patterns", "bias_all", "all_linear_qa", "layers_int"}) {
    models::EncoderModel model = testing::load_qa_model();
    PeftModelView view = peft_view(model);
    const LoraSummary s = attach_lora(view, testing::case_config(name), 11);
    double phase = 0;
    for (const AdapterTensor& t : s.trainable) testing::fill_wave(*t.tensor, 0.2, phase += 1);
    save_adapter(tmp.sub(name), view, s);

    models::EncoderModel loaded = testing::load_qa_model();
    PeftModelView loaded_view = peft_view(loaded);
    const LoraSummary back = load_adapter(loaded_view, tmp.sub(name), {true});
    EXPECT_EQ(back.adapted, s.adapted) << name;
    EXPECT_EQ(back.trainable_params, s.trainable_params) << name;
    ASSERT_EQ(back.trainable.size(), s.trainable.size()) << name;
    for (size_t i = 0; i < s.trainable.size(); ++i) {
      EXPECT_EQ(back.trainable[i].key, s.trainable[i].key);
      EXPECT_TRUE(at::equal(*back.trainable[i].tensor, *s.trainable[i].tensor)) << back.trainable[i].key;
    }
    EXPECT_TRUE(at::equal(models::qa_forward(loaded, in, {}).start, models::qa_forward(model, in, {}).start))
        << name;
    // The config is what attach produced, with inference_mode forced on by the save.
    LoraConfig expected = s.config;
    expected.inference_mode = true;
    expected.auto_mapping = back.config.auto_mapping;
    EXPECT_EQ(lora_config_to_json(back.config), lora_config_to_json(expected)) << name;
  }
}

TEST(AdapterFiles, SavingOverAnAdapterReplacesItAndKeepsOtherFiles) {
  TempDir tmp;
  const std::string dir = tmp.sub("adapter");
  models::EncoderModel model = testing::load_qa_model();
  PeftModelView view = peft_view(model);
  save_adapter(dir, view, attach_lora(view, testing::case_config("all_linear"), 1));
  write_file_atomic(dir + "/README.md", "notes");
  models::EncoderModel m2 = testing::load_qa_model();
  PeftModelView v2 = peft_view(m2);
  save_adapter(dir, v2, attach_lora(v2, testing::case_config("list"), 1));
  EXPECT_EQ(read_lora_config(dir + "/adapter_config.json").r, 4);
  EXPECT_EQ(read_file(dir + "/README.md"), "notes");
  EXPECT_EQ(fsys::list_directory(tmp.path()).size(), 1u);  // no staging folder left behind
  EXPECT_EQ(fsys::list_directory(dir).size(), 3u);
}

// A copy of a fixture adapter to break.
std::string copy_adapter(const TempDir& tmp, const std::string& name) {
  const std::string dir = tmp.sub(name);
  fsys::create_directories(dir);
  copy_file(peft_fixture(name + "/adapter_config.json"), dir + "/adapter_config.json");
  copy_file(peft_fixture(name + "/adapter_model.safetensors"), dir + "/adapter_model.safetensors");
  return dir;
}

void load_into_fresh_model(const std::string& dir) {
  models::EncoderModel model = testing::load_qa_model();
  PeftModelView view = peft_view(model);
  load_adapter(view, dir);
}

// Rewrites the adapter's weights through `edit`.
template <typename F>
void edit_weights(const std::string& dir, F&& edit) {
  const std::string path = dir + "/adapter_model.safetensors";
  NamedTensors tensors;
  {
    const SafetensorsFile f = SafetensorsFile::open(path);
    for (const std::string& key : f.names()) tensors.emplace_back(key, f.tensor(key).clone());
  }
  edit(tensors);
  save_safetensors(path, tensors, {{"format", "pt"}});
}

TEST(AdapterFiles, MissingLoraTensorNamesFileAndKey) {
  TempDir tmp;
  const std::string dir = copy_adapter(tmp, "list");
  const std::string key = "base_model.model.roberta.encoder.layer.1.attention.self.value.lora_B.weight";
  edit_weights(dir, [&](NamedTensors& t) {
    t.erase(std::remove_if(t.begin(), t.end(), [&](const auto& p) { return p.first == key; }), t.end());
  });
  expect_error([&] { load_into_fresh_model(dir); }, {dir + "/adapter_model.safetensors", key, "missing"});
}

TEST(AdapterFiles, MissingModulesToSaveTensorNamesFileAndKey) {
  TempDir tmp;
  const std::string dir = copy_adapter(tmp, "list");
  edit_weights(dir, [&](NamedTensors& t) {
    t.erase(std::remove_if(t.begin(), t.end(),
                           [](const auto& p) { return p.first == "base_model.model.qa_outputs.bias"; }),
            t.end());
  });
  expect_error([&] { load_into_fresh_model(dir); },
               {"adapter_model.safetensors", "base_model.model.qa_outputs.bias"});
}

TEST(AdapterFiles, ShapeMismatchNamesFileKeyAndBothShapes) {
  TempDir tmp;
  const std::string dir = copy_adapter(tmp, "list");
  const std::string key = "base_model.model.roberta.encoder.layer.0.attention.self.query.lora_A.weight";
  edit_weights(dir, [&](NamedTensors& t) {
    for (auto& [k, v] : t) {
      if (k == key) v = at::zeros({4, 31});
    }
  });
  expect_error([&] { load_into_fresh_model(dir); }, {"adapter_model.safetensors", key, "[4, 31]", "[4, 32]"});
  // A config whose r disagrees with the weights fails the same way.
  const std::string dir2 = copy_adapter(tmp, "regex");
  Json config = Json::parse(read_file(dir2 + "/adapter_config.json"));
  config["r"] = 3;
  write_file_atomic(dir2 + "/adapter_config.json", config.dump(2));
  expect_error([&] { load_into_fresh_model(dir2); }, {"lora_A.weight", "[2, 32]", "[3, 32]"});
}

TEST(AdapterFiles, MalformedConfigNamesFileAndKey) {
  TempDir tmp;
  const std::string dir = copy_adapter(tmp, "list");
  const std::string config_path = dir + "/adapter_config.json";
  write_file_atomic(config_path, read_file(peft_fixture("list/adapter_config.json")).substr(0, 100));
  expect_error([&] { load_into_fresh_model(dir); }, {config_path, "malformed JSON"});
  Json config = Json::parse(read_file(peft_fixture("list/adapter_config.json")));
  config["lora_alpha"] = "eight";
  write_file_atomic(config_path, config.dump(2));
  expect_error([&] { load_into_fresh_model(dir); }, {config_path, "'lora_alpha'"});
  config["lora_alpha"] = 8;
  config["use_dora"] = true;
  write_file_atomic(config_path, config.dump(2));
  expect_error([&] { load_into_fresh_model(dir); }, {config_path, "'use_dora'"});
  config["use_dora"] = false;
  config["target_modules"] = {"q_proj"};
  write_file_atomic(config_path, config.dump(2));
  expect_error([&] { load_into_fresh_model(dir); }, {config_path, "'target_modules'"});
}

TEST(AdapterFiles, MissingFilesAreNamed) {
  TempDir tmp;
  const std::string dir = copy_adapter(tmp, "list");
  fsys::remove_file(dir + "/adapter_model.safetensors");
  expect_error([&] { load_into_fresh_model(dir); }, {dir + "/adapter_model.safetensors", "missing"});
  write_file_atomic(dir + "/adapter_model.bin", "pickle");
  expect_error([&] { load_into_fresh_model(dir); }, {"adapter_model.bin", "legacy"});
  fsys::remove_file(dir + "/adapter_config.json");
  expect_error([&] { load_into_fresh_model(dir); }, {dir + "/adapter_config.json", "missing"});
  expect_error([&] { load_into_fresh_model(tmp.sub("nowhere")); }, {tmp.sub("nowhere"), "not found"});
}

TEST(AdapterFiles, UnexpectedTensorsAreReportedNotFatal) {
  TempDir tmp;
  const std::string dir = copy_adapter(tmp, "list");
  edit_weights(
      dir, [](NamedTensors& t) { t.emplace_back("base_model.model.extra.lora_A.weight", at::zeros({1})); });
  models::EncoderModel model = testing::load_qa_model();
  PeftModelView view = peft_view(model);
  LoadAdapterReport report;
  load_adapter(view, dir, {}, &report);
  EXPECT_EQ(report.unexpected, std::vector<std::string>{"base_model.model.extra.lora_A.weight"});
}

}  // namespace
}  // namespace qlora::peft

namespace qlora::peft {
namespace {

using testing::TempDir;

// "all-linear" is saved as PEFT 0.21.2 saves it: the set of full module paths it expanded to (PEFT's
// _maybe_include_all_linear_layers adds module names, not suffixes; the order is a Python set's, so
// compare as sets). The fixture's adapter_config.json was written by PEFT itself.
TEST(AdapterFiles, AllLinearTargetModulesAreSavedAsPeftSavesThem) {
  TempDir tmp;
  models::EncoderModel model = testing::load_qa_model();
  PeftModelView view = peft_view(model);
  save_adapter(tmp.sub("ours"), view, attach_lora(view, testing::case_config("all_linear"), 1));
  auto modules = [](const std::string& path) {
    const Json j = read_json_file(path);
    std::set<std::string> out;
    for (const auto& m : j.at("target_modules")) out.insert(m.get<std::string>());
    return out;
  };
  const auto ours = modules(tmp.sub("ours") + "/adapter_config.json");
  EXPECT_EQ(ours, modules(testing::peft_fixture("all_linear/adapter_config.json")));
  EXPECT_EQ(ours.size(), 13u);
}

}  // namespace
}  // namespace qlora::peft
