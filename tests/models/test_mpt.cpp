// MPT / PhoGPT against the fixtures of tools/gen_mpt_fixtures.py: mpt_hf from transformers' MptForCausalLM,
// mpt_phogpt and mpt_variant from the script's line-by-line re-implementation of llm-foundry's MPT (which the
// script checks against transformers on mpt_hf). Padded batches, the KV cache, greedy decoding, packing,
// ALiBi slopes, LoRA, bf16 and config errors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "../error_of.h"
#include "encoder_test_util.h"
#include "qlora/core/atomic_file.h"
#include "qlora/core/fs.h"
#include "qlora/core/jsonl.h"
#include "qlora/io/safetensors.h"
#include "qlora/models/causal_lm.h"
#include "qlora/models/mpt.h"
#include "qlora/peft/lora_model.h"

namespace qlora::models {
namespace {

using testing::expect_close;
using testing::model_dir;

// fp32 with the same ops in the same order on the same libtorch as the reference: what is left is matmul
// blocking (the cache stores keys [S, D] where llm-foundry stores [D, S]), ~1e-7 relative on logits of
// magnitude ~1-10; any formula error (a slope, the bias slice, a mask) shows up at >= 1e-3.
constexpr double kFp32Tol = 1e-5;

const char* const kModels[] = {"mpt_hf", "mpt_phogpt", "mpt_variant"};

SafetensorsFile outputs(const std::string& name) {
  return SafetensorsFile::open(model_dir(name) + "/outputs.safetensors");
}

// transformers' values at padded query positions come from a different (irrelevant) fully-masked-row
// rule, so mpt_hf is compared at real tokens; the llm-foundry reference is matched everywhere.
void expect_logits(const std::string& name, const std::string& what, const at::Tensor& logits,
                   const at::Tensor& expected, const at::Tensor& mask) {
  ASSERT_EQ(logits.sizes(), expected.sizes()) << what;
  if (name == "mpt_hf") {
    const at::Tensor keep = mask.to(at::kBool);
    expect_close(name + " " + what, logits.index({keep}), expected.index({keep}), kFp32Tol);
  } else {
    expect_close(name + " " + what, logits, expected, kFp32Tol);
  }
}

class MptParity : public ::testing::TestWithParam<const char*> {};

TEST_P(MptParity, PaddedLogitsMatchReference) {
  const std::string name = GetParam();
  auto model = load_causal_lm(model_dir(name));
  const auto dump = outputs(name);
  for (const std::string side : {"right", "left"}) {
    CausalLmInputs in;
    in.input_ids = dump.tensor(side + ".input_ids");
    in.attention_mask = dump.tensor(side + ".attention_mask");
    const at::Tensor logits = model->forward(in, nullptr, {}).logits;
    EXPECT_EQ(logits.scalar_type(), at::kFloat);
    expect_logits(name, side + "-padded", logits, dump.tensor(side + ".logits"), in.attention_mask);
  }
}

// Prefill 5, a 3-token chunk (causal mask against cached keys), then one token per step.
TEST_P(MptParity, KvCacheStepsMatchReference) {
  const std::string name = GetParam();
  auto model = load_causal_lm(model_dir(name));
  const auto dump = outputs(name);
  const at::Tensor ids = dump.tensor("left.input_ids");
  const at::Tensor mask = dump.tensor("left.attention_mask");
  KvCache cache;
  std::vector<at::Tensor> steps;
  const int64_t bounds[][2] = {{0, 5}, {5, 8}, {8, 9}, {9, 10}, {10, 11}, {11, 12}};
  for (const auto& b : bounds) {
    CausalLmInputs in;
    in.input_ids = ids.narrow(1, b[0], b[1] - b[0]);
    in.attention_mask = mask.narrow(1, 0, b[1]);
    steps.push_back(model->forward(in, &cache, {}).logits);
    EXPECT_EQ(cache.length(), b[1]);
  }
  expect_logits(name, "cache steps", at::cat(steps, 1), dump.tensor("cache.logits"), mask);
  // The same steps reproduce the uncached forward at real tokens.
  const at::Tensor keep = mask.to(at::kBool);
  expect_close(name + " cache vs full", at::cat(steps, 1).index({keep}),
               dump.tensor("left.logits").index({keep}), kFp32Tol);
}

// A minimal greedy loop over the KV cache (what generate does with MPT: the new token plus the full mask).
TEST_P(MptParity, Greedy32TokensMatchReference) {
  const std::string name = GetParam();
  auto model = load_causal_lm(model_dir(name));
  const auto dump = outputs(name);
  CausalLmInputs in;
  in.input_ids = dump.tensor("greedy.prompt_ids");
  in.attention_mask = dump.tensor("greedy.prompt_mask");
  KvCache cache;
  at::Tensor logits = model->forward(in, &cache, {}).logits;
  std::vector<at::Tensor> out;
  for (int step = 0; step < 32; ++step) {
    const at::Tensor next = logits.select(1, logits.size(1) - 1).argmax(-1, /*keepdim=*/true);  // [B, 1]
    out.push_back(next);
    in.input_ids = next;
    in.attention_mask = at::cat({in.attention_mask, at::ones_like(next)}, 1);
    logits = model->forward(in, &cache, {}).logits;
  }
  const at::Tensor ids = at::cat(out, 1);
  const at::Tensor expected = dump.tensor("greedy.ids");
  EXPECT_TRUE(at::equal(ids, expected)) << name << "\nours:\n" << ids << "\nreference:\n" << expected;
}

INSTANTIATE_TEST_SUITE_P(Models, MptParity, ::testing::ValuesIn(kModels));

TEST(Mpt, AlibiSlopesMatchLlmFoundryGenSlopes) {
  const auto dump = outputs("mpt_phogpt");
  // PhoGPT-4B: 24 heads -> N = 32, exponents 0.5..8.0 (16 heads) then 0.25..3.75 (8 heads).
  const at::Tensor s24 = mpt_alibi_slopes(24, 8);
  ASSERT_EQ(s24.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(s24, dump.tensor("alibi.slopes_24"))) << s24;
  EXPECT_TRUE(at::equal(mpt_alibi_slopes(6, 8), dump.tensor("alibi.slopes_6")));
  EXPECT_FLOAT_EQ(s24[0].item<float>(), std::pow(2.0f, -0.5f));
  EXPECT_FLOAT_EQ(s24[16].item<float>(), std::pow(2.0f, -0.25f));
  // The table is built at max_seq_len and its last column is 0 for every head.
  const at::Tensor table = mpt_alibi_bias(24, 16, 8);
  EXPECT_EQ(table.sizes(), at::IntArrayRef({1, 24, 1, 16}));
  EXPECT_EQ(table.index({0, 3, 0, 15}).item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(table.index({0, 0, 0, 0}).item<float>(), -15.0f * std::pow(2.0f, -0.5f));
}

// Packing (llm-foundry attn_uses_sequence_id): block-diagonal causal attention.
TEST(Mpt, SegmentIdsMatchSequenceIdReference) {
  auto model = load_causal_lm(model_dir("mpt_phogpt"));
  const auto dump = outputs("mpt_phogpt");
  CausalLmInputs in;
  in.input_ids = dump.tensor("packed.input_ids");
  in.segment_ids = dump.tensor("packed.segment_ids");
  in.attention_mask = at::ones_like(in.input_ids);
  expect_close("phogpt packed", model->forward(in, nullptr, {}).logits, dump.tensor("packed.logits"),
               kFp32Tol);
  // Segments are a training feature: not after cached tokens.
  KvCache cache;
  CausalLmInputs prefill;
  prefill.input_ids = in.input_ids;
  model->forward(prefill, &cache, {});
  in.attention_mask = at::Tensor();
  EXPECT_NE(qlora_test::error_of([&] { model->forward(in, &cache, {}); }).find("segment_ids"),
            std::string::npos);
}

TEST(Mpt, NamesAndTableFollowLlmFoundry) {
  auto model = load_causal_lm(model_dir("mpt_phogpt"));
  EXPECT_EQ(model->model_type(), "mpt");
  EXPECT_EQ(model->hf_class_name(), "MPTForCausalLM");
  EXPECT_EQ(model->max_sequence_length(), 512);
  EXPECT_EQ(model->num_layers(), 2);
  const auto linears = model->named_linears();
  ASSERT_EQ(linears.size(), 8u);  // tied: no lm_head module
  EXPECT_EQ(linears[0].first, "transformer.blocks.0.attn.Wqkv");
  EXPECT_EQ(linears[1].first, "transformer.blocks.0.attn.out_proj");
  EXPECT_EQ(linears[2].first, "transformer.blocks.0.ffn.up_proj");
  EXPECT_EQ(linears[3].first, "transformer.blocks.0.ffn.down_proj");
  EXPECT_TRUE(linears[0].second->base.bias.defined());  // no_bias: false
  // Every checkpoint tensor is in the table and vice versa.
  const SafetensorsFile file = SafetensorsFile::open(model_dir("mpt_phogpt") + "/model.safetensors");
  const auto params = model->named_parameters();
  EXPECT_EQ(params.size(), file.names().size());
  for (const auto& [name, tensor] : params) {
    EXPECT_TRUE(at::equal(*tensor, file.tensor(name))) << name;
  }
  EXPECT_EQ(model->tensor_table().size(), params.size());

  auto variant = load_causal_lm(model_dir("mpt_variant"));
  const auto vl = variant->named_linears();
  EXPECT_EQ(vl.back().first, "lm_head");                              // untied
  EXPECT_EQ(vl.front().second->base.weight.size(0), 48 + 2 * 2 * 8);  // GQA: C + 2 * Hkv * D
  EXPECT_EQ(variant->named_parameters()[1].first, "transformer.wpe.weight");
  auto hf = load_causal_lm(model_dir("mpt_hf"));
  EXPECT_FALSE(hf->named_linears()[0].second->base.bias.defined());  // no_bias: true
}

TEST(Mpt, PeftLoraAdapterMatchesPeftLogits) {
  auto model = load_causal_lm(model_dir("mpt_phogpt"));
  auto view = peft::peft_view(*model);
  const auto summary = peft::load_adapter(view, model_dir("mpt_phogpt") + "/lora");
  ASSERT_EQ(summary.adapted.size(), 8u);  // Wqkv, out_proj, up_proj, down_proj of 2 blocks
  EXPECT_EQ(summary.adapted.front(), "transformer.blocks.0.attn.Wqkv");
  const auto dump = outputs("mpt_phogpt");
  CausalLmInputs in;
  in.input_ids = dump.tensor("right.input_ids");
  in.attention_mask = dump.tensor("right.attention_mask");
  expect_close("phogpt + LoRA", model->forward(in, nullptr, {}).logits, dump.tensor("lora.logits"), kFp32Tol);
  // B is nonzero, so the comparison above is not vacuous.
  EXPECT_GT(testing::max_abs_diff(dump.tensor("lora.logits"), dump.tensor("right.logits")), 1e-2);
}

TEST(Mpt, Bf16LoadMatchesReferenceBf16) {
  CausalLmLoadOptions options;
  options.dtype = at::kBFloat16;
  auto model = load_causal_lm(model_dir("mpt_phogpt"), options);
  EXPECT_EQ(model->dtype(), at::kBFloat16);
  const auto dump = outputs("mpt_phogpt");
  CausalLmInputs in;
  in.input_ids = dump.tensor("right.input_ids");
  in.attention_mask = dump.tensor("right.attention_mask");
  const at::Tensor logits = model->forward(in, nullptr, {}).logits;
  EXPECT_EQ(logits.scalar_type(), at::kBFloat16);
  // Same CPU bf16 kernels in the same order (float32 ALiBi and softmax, as llm-foundry); a few bf16 ulps
  // (2^-8 relative on logits up to ~8) allow for a differently blocked matmul reduction.
  expect_close("phogpt bf16", logits, dump.tensor("bf16.logits"), 0.0625);
}

// A copy of mpt_phogpt with config.json edited by `edit`.
std::string edited_copy(const std::string& tag, const std::function<void(Json&)>& edit) {
  const std::string src = model_dir("mpt_phogpt");
  const std::string dir = ::testing::TempDir() + "/mpt_" + tag;
  fsys::remove_all(dir);
  fsys::create_directories(dir);
  Json config = read_json_file(src + "/config.json");
  edit(config);
  write_file_atomic(dir + "/config.json", config.dump(2));
  write_file_atomic(dir + "/model.safetensors", read_file(src + "/model.safetensors"));
  return dir;
}

TEST(Mpt, UnsupportedOptionsNameConfigAndKey) {
  struct Case {
    const char* tag;
    std::function<void(Json&)> edit;
    const char* key;
  };
  const Case cases[] = {
      {"rope", [](Json& c) { c["attn_config"]["rope"] = true; }, "attn_config.rope is true"},
      {"qk_ln", [](Json& c) { c["attn_config"]["qk_ln"] = true; }, "attn_config.qk_ln is true"},
      {"ffn", [](Json& c) { c["ffn_config"]["ffn_type"] = "mptglu"; }, "ffn_config.ffn_type 'mptglu'"},
      {"attn_type", [](Json& c) { c["attn_config"]["attn_type"] = "flash_mha"; }, "attn_config.attn_type"},
      {"logit_scale", [](Json& c) { c["logit_scale"] = "sqrt"; }, "logit_scale 'sqrt'"},
      {"fraction", [](Json& c) { c["embedding_fraction"] = 0.5; }, "embedding_fraction"},
      {"norm", [](Json& c) { c["norm_type"] = "rmsnorm"; }, "norm_type 'rmsnorm'"},
  };
  for (const Case& c : cases) {
    const std::string dir = edited_copy(c.tag, c.edit);
    const std::string err = qlora_test::error_of([&] { load_causal_lm(dir); });
    EXPECT_NE(err.find("config.json"), std::string::npos) << err;
    EXPECT_NE(err.find(c.key), std::string::npos) << err;
    fsys::remove_all(dir);
  }
  // learned_pos_emb defaults to true in llm-foundry: without the key, wpe is required and named.
  const std::string dir = edited_copy("wpe", [](Json& c) { c.erase("learned_pos_emb"); });
  const std::string err = qlora_test::error_of([&] { load_causal_lm(dir); });
  EXPECT_NE(err.find("missing tensor 'transformer.wpe.weight'"), std::string::npos) << err;
  fsys::remove_all(dir);
}

TEST(Mpt, SequenceLongerThanMaxSeqLenIsAnError) {
  auto model = load_causal_lm(model_dir("mpt_variant"));  // max_seq_len 48
  CausalLmInputs in;
  in.input_ids = at::ones({1, 49}, at::kLong);
  EXPECT_NE(qlora_test::error_of([&] { model->forward(in, nullptr, {}); }).find("max_seq_len 48"),
            std::string::npos);
}

}  // namespace
}  // namespace qlora::models
