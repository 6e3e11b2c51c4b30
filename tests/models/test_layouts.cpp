// Checkpoint layouts users have that the other fixtures do not cover, against what transformers 5.17 loads
// from the same folders (tools/gen_layout_fixtures.py): a Qwen2 config without tie_word_embeddings, a
// "tied" config whose checkpoint stores its own head, and an MPT written by transformers' MptForCausalLM.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "encoder_test_util.h"
#include "qlora/core/atomic_file.h"
#include "qlora/core/fs.h"
#include "qlora/io/checkpoint.h"
#include "qlora/models/causal_lm.h"
#include "qlora/models/encoder.h"

namespace qlora::models {
namespace {

using testing::hf_outputs;
using testing::model_dir;

// fp32, same op order as transformers; see tests/parity.h for why the bound is relative.
constexpr double kFp32Tol = 1e-5;

// Logits at real tokens, then 16 greedy tokens on the KV cache (the prompt is one unpadded row).
void expect_matches_transformers(const std::string& name) {
  auto model = load_causal_lm(model_dir(name));
  const auto dump = hf_outputs(name);
  CausalLmInputs in;
  in.input_ids = dump.tensor("right.input_ids");
  in.attention_mask = dump.tensor("right.attention_mask");
  const at::Tensor keep = in.attention_mask.to(at::kBool);
  const at::Tensor logits = model->forward(in, nullptr, {}).logits;
  testing::expect_close(name + " logits", logits.index({keep}), dump.tensor("right.logits").index({keep}),
                        kFp32Tol);

  const at::Tensor expected = dump.tensor("greedy.ids");  // [1, 16]
  KvCache cache;
  CausalLmInputs step;
  step.input_ids = dump.tensor("greedy.prompt_ids");
  std::vector<int64_t> got;
  for (int64_t i = 0; i < expected.size(1); ++i) {
    const at::Tensor next = model->forward(step, &cache, {}).logits.select(1, -1).argmax(-1);  // [1]
    got.push_back(next.item<int64_t>());
    step.input_ids = next.view({1, 1});
  }
  const auto* want = expected.data_ptr<int64_t>();
  EXPECT_EQ(got, std::vector<int64_t>(want, want + expected.numel())) << name << " greedy ids";
}

bool has_parameter(CausalLM& model, const std::string& name) {
  for (const auto& [n, t] : model.named_parameters())
    if (n == name) return true;
  return false;
}

TEST(Layouts, Qwen2WithoutTieKeyIsUntiedAsTransformersDefault) {
  expect_matches_transformers("layout_qwen2_untied_default");
  auto model = load_causal_lm(model_dir("layout_qwen2_untied_default"));
  EXPECT_TRUE(has_parameter(*model, "lm_head.weight"));
}

TEST(Layouts, TiedConfigWithStoredDifferentHeadUsesTheStoredHead) {
  ::testing::internal::CaptureStderr();
  auto model = load_causal_lm(model_dir("layout_llama_tied_own_head"));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("using the stored head untied"), std::string::npos) << log;
  EXPECT_TRUE(has_parameter(*model, "lm_head.weight"));  // so that export writes it
  expect_matches_transformers("layout_llama_tied_own_head");
}

TEST(Layouts, MptSavedByTransformersLoadsWithTransformersSemantics) {
  ::testing::internal::CaptureStderr();
  auto model = load_causal_lm(model_dir("layout_mpt_transformers"));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(model->hf_class_name(), "MptForCausalLM");
  // The keys transformers ignores are named, not silently dropped.
  for (const char* key : {"no_bias false", "learned_pos_emb true", "alibi_bias_max 4", "expansion_ratio 2"})
    EXPECT_NE(log.find(key), std::string::npos) << key << " in: " << log;
  expect_matches_transformers("layout_mpt_transformers");
}

// A tensor no module consumes is named in a warning (transformers reports it as UNEXPECTED).
TEST(Layouts, UnusedCheckpointTensorIsWarnedByName) {
  // qlora::fsys, not std::filesystem: libtorch exports std::filesystem symbols that clash (see core/fs.h).
  const std::string dir = "/tmp/qlora_layout_unused_" + std::to_string(::getpid());
  fsys::remove_all(dir);
  fsys::create_directories(dir);
  const std::string src = model_dir("layout_qwen2_untied_default");
  write_file_atomic(fsys::join(dir, "config.json"), read_file(src + "/config.json"));
  const Checkpoint ckpt = open_checkpoint(src);
  NamedTensors tensors;
  for (const auto& n : ckpt.names()) tensors.emplace_back(n, ckpt.tensor(n));
  tensors.emplace_back("model.layers.0.mlp.extra_proj.weight", at::zeros({4, 4}));
  save_checkpoint(dir, tensors);
  ::testing::internal::CaptureStderr();
  auto model = load_causal_lm(dir);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("'model.layers.0.mlp.extra_proj.weight'"), std::string::npos) << log;
  fsys::remove_all(dir);
}

// The same for encoders: an MLM checkpoint loaded under a QA head has an lm_head nobody uses.
TEST(Layouts, EncoderCheckpointTensorsTheHeadDoesNotUseAreWarned) {
  EncoderLoadOptions options;
  options.head = EncoderHead::kQuestionAnswering;
  ::testing::internal::CaptureStderr();
  load_encoder(model_dir("tiny-xlmr-mlm"), options);
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("not used by the model"), std::string::npos) << log;
  EXPECT_NE(log.find("'lm_head."), std::string::npos) << log;
}

}  // namespace
}  // namespace qlora::models
