// qlora export: the merged checkpoint of the tiny LLaMA + PEFT adapter is byte-identical to the one
// tools/check_export.py proved with transformers (AutoModelForCausalLM loads it and gives PEFT's
// base + adapter logits), and loading it back gives those logits.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "error_of.h"
#include "qlora/core/atomic_file.h"
#include "qlora/core/fs.h"
#include "qlora/io/safetensors.h"
#include "qlora/models/causal_lm.h"
#include "qlora/tasks/export.h"

namespace qlora::tasks {
namespace {

const std::string kFixtures = QLORA_FIXTURES_DIR;
const std::string kBase = kFixtures + "/models/llama_llama3";

std::string temp_dir(const std::string& name) {
  return "/tmp/qlora_test_export_" + std::to_string(::getpid()) + "_" + name;
}

TEST(Export, MergedLlamaIsWhatTransformersChecked) {
  const std::string out = temp_dir("merged");
  fsys::remove_all(out);
  ExportOptions o;
  o.model_dir = kBase;
  o.adapter_dir = kBase + "/lora";
  o.out_dir = out;
  const Json result = export_merged(o);
  EXPECT_EQ(result["merged_modules"].get<int64_t>(), 4);  // q_proj and v_proj of two layers
  const std::string proved = kFixtures + "/export/llama_llama3_merged";
  for (const char* file : {"model.safetensors", "config.json", "generation_config.json"})
    EXPECT_EQ(read_file(out + "/" + file), read_file(proved + "/" + file)) << file;

  const auto check = SafetensorsFile::open(kFixtures + "/export/llama_llama3_export_check.safetensors");
  auto model = models::load_causal_lm(out);
  models::CausalLmInputs in;
  in.input_ids = check.tensor("input_ids");
  const at::Tensor logits = model->forward(in, nullptr, {}).logits;
  // fp32: transformers' eager LLaMA and ours differ only in summation order (measured 0 elsewhere).
  EXPECT_LT((logits - check.tensor("merged_logits")).abs().max().item<double>(), 1e-5);
  EXPECT_LT((logits - check.tensor("peft_logits")).abs().max().item<double>(), 1e-5);
  fsys::remove_all(out);
}

TEST(Export, RefusesToReplaceAnExistingFolderAndLeavesNothingOnError) {
  const std::string out = temp_dir("existing");
  fsys::remove_all(out);
  fsys::create_directories(out);
  ExportOptions o;
  o.model_dir = kBase;
  o.out_dir = out;
  EXPECT_NE(qlora_test::error_of([&] { export_merged(o); }).find("already exists"), std::string::npos);
  fsys::remove_all(out);
  o.adapter_dir = kBase + "/no-such-adapter";
  EXPECT_NE(qlora_test::error_of([&] { export_merged(o); }).find("no-such-adapter"), std::string::npos);
  EXPECT_FALSE(fsys::exists(out));
}

}  // namespace
}  // namespace qlora::tasks
