// qlora export: the merged checkpoint of the tiny LLaMA + PEFT adapter is byte-identical to the one
// tools/check_export.py proved with transformers (AutoModelForCausalLM loads it and gives PEFT's
// base + adapter logits), and loading it back gives those logits.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "error_of.h"
#include "parity.h"
#include "qlora/core/atomic_file.h"
#include "qlora/core/fs.h"
#include "qlora/core/jsonl.h"
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
  for (const char* file : {"config.json", "generation_config.json"})
    EXPECT_EQ(read_file(out + "/" + file), read_file(proved + "/" + file)) << file;
  // The weights: same names, dtypes, shapes and order; values equal up to float32 rounding of the merge
  // W + s B A (a sum over r = 4 terms that AVX2 and AVX-512 kernels may order differently; a few eps of
  // the largest weight). Unmerged tensors are copied, so those are exact.
  const auto written = SafetensorsFile::open(out + "/model.safetensors");
  const auto expected = SafetensorsFile::open(proved + "/model.safetensors");
  ASSERT_EQ(written.names(), expected.names());
  for (const auto& name : expected.names()) {
    const at::Tensor w = written.tensor(name), e = expected.tensor(name);
    ASSERT_EQ(w.scalar_type(), e.scalar_type()) << name;
    if (name.find("q_proj") == std::string::npos && name.find("v_proj") == std::string::npos) {
      EXPECT_TRUE(at::equal(w, e)) << name << " is not merged and must be copied exactly";
    } else {
      qlora::testing::expect_eps_close(name, w, e, 4);
    }
  }

  const auto check = SafetensorsFile::open(kFixtures + "/export/llama_llama3_export_check.safetensors");
  auto model = models::load_causal_lm(out);
  models::CausalLmInputs in;
  in.input_ids = check.tensor("input_ids");
  const at::Tensor logits = model->forward(in, nullptr, {}).logits;
  // fp32: transformers' eager LLaMA and ours differ only in summation order (measured 0 elsewhere).
  qlora::testing::expect_close("merged export logits vs transformers", logits, check.tensor("merged_logits"),
                               1e-5);
  qlora::testing::expect_close("merged export logits vs PEFT", logits, check.tensor("peft_logits"), 1e-5);
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

// transformers 5 reads "dtype" (over "torch_dtype", which older readers use): both must name the dtype
// written, or transformers loads an fp32 export of an fp16 base as fp16 without a word.
TEST(Export, ConfigDtypeFollowsTheExportedWeights) {
  const std::string half = temp_dir("fp16"), full = temp_dir("fp32");
  fsys::remove_all(half);
  fsys::remove_all(full);
  ExportOptions o;
  o.model_dir = kBase;  // its config.json says "dtype": "float32", as transformers 5 saves it
  o.out_dir = half;
  o.dtype = "fp16";
  export_merged(o);
  Json config = Json::parse(read_file(half + "/config.json"));
  EXPECT_EQ(config.at("dtype"), "float16");
  EXPECT_EQ(config.at("torch_dtype"), "float16");
  EXPECT_EQ(SafetensorsFile::open(half + "/model.safetensors").tensor("lm_head.weight").scalar_type(),
            at::kHalf);
  o.model_dir = half;
  o.out_dir = full;
  o.dtype = "fp32";
  export_merged(o);
  config = Json::parse(read_file(full + "/config.json"));
  EXPECT_EQ(config.at("dtype"), "float32");
  EXPECT_EQ(config.at("torch_dtype"), "float32");
  fsys::remove_all(half);
  fsys::remove_all(full);
}

}  // namespace
}  // namespace qlora::tasks
