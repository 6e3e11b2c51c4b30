// T5 v1.0 (relu, tied + rescaled lm_head), T5 v1.1 (gated-gelu, separate lm_head) and mT5 against
// transformers 5.17 dumps of tiny random models (tools/gen_t5_fixtures.py): relative-position buckets,
// encoder outputs of a padded batch, teacher-forced logits and loss with -100 labels, bf16 / fp16, and a
// PEFT LoRA adapter's logits, loss and gradients.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include "error_of.h"
#include "models/t5_test_util.h"
#include "qlora/core/fs.h"
#include "qlora/io/checkpoint.h"
#include "qlora/io/hf_config.h"
#include "qlora/io/safetensors.h"
#include "qlora/models/t5.h"
#include "qlora/peft/lora_model.h"

namespace qlora::models {
namespace {

using t5_testing::expect_close;
using t5_testing::t5_dir;
using t5_testing::t5_dump;

const char* const kModels[] = {"t5_v1_0", "t5_v1_1", "t5_mt5"};

Seq2SeqInputs inputs_of(const SafetensorsFile& dump) {
  return {dump.tensor("enc.input_ids"), dump.tensor("enc.attention_mask"), dump.tensor("labels"), {}};
}

TEST(T5Config, ReadsTheThreeVariants) {
  const T5Config v10 = T5Config::from_hf_config(HfConfig::load(t5_dir("t5_v1_0")));
  EXPECT_FALSE(v10.gated_act);
  EXPECT_EQ(v10.dense_act, nn::Activation::kRelu);
  EXPECT_TRUE(v10.scale_decoder_outputs);  // no tie key: tied, rescaled (T5 v1.0, ViT5)
  EXPECT_EQ(v10.d_kv, 8);
  EXPECT_EQ(v10.inner_dim(), 32);
  const T5Config v11 = T5Config::from_hf_config(HfConfig::load(t5_dir("t5_v1_1")));
  EXPECT_TRUE(v11.gated_act);
  EXPECT_EQ(v11.dense_act, nn::Activation::kGeluTanh);  // "gated-gelu" means gelu_new
  EXPECT_FALSE(v11.scale_decoder_outputs);              // "tie_word_embeddings": false
  const T5Config mt5 = T5Config::from_hf_config(HfConfig::load(t5_dir("t5_mt5")));
  EXPECT_EQ(mt5.model_type, "mt5");
  EXPECT_FALSE(mt5.scale_decoder_outputs);
}

TEST(T5Config, RejectsMalformedFeedForwardProj) {
  Json j = {{"model_type", "t5"}, {"feed_forward_proj", "gated-gelu-x"}};
  EXPECT_NE(qlora_test::error_of([&] {
              T5Config::from_hf_config(HfConfig(j, "cfg.json"));
            }).find("feed_forward_proj"),
            std::string::npos);
  j = {{"model_type", "bert"}};
  EXPECT_NE(qlora_test::error_of([&] { T5Config::from_hf_config(HfConfig(j, "cfg.json")); }).find("bert"),
            std::string::npos);
}

TEST(T5Load, TiesLmHeadOnlyWhenAbsent) {
  T5LoadReport report;
  T5Model v10 = load_t5(t5_dir("t5_v1_0"), &report);
  EXPECT_TRUE(v10.tied_lm_head);
  EXPECT_TRUE(v10.lm_head.base.weight.is_same(v10.shared));
  EXPECT_TRUE(report.unused.empty());
  T5Model v11 = load_t5(t5_dir("t5_v1_1"));
  EXPECT_FALSE(v11.tied_lm_head);
  // HF's named_parameters() order; a tied lm_head is listed once, as shared.weight.
  EXPECT_EQ(v10.named_parameters().front().first, "shared.weight");
  EXPECT_EQ(v10.named_parameters().back().first, "decoder.final_layer_norm.weight");
  EXPECT_EQ(v11.named_parameters().back().first, "lm_head.weight");
  EXPECT_EQ(v11.named_linears()[0].first, "encoder.block.0.layer.0.SelfAttention.q");
}

TEST(T5Buckets, MatchTransformersBothDirections) {
  const SafetensorsFile dump = t5_dump("t5_v1_0");
  const at::Tensor rel = at::arange(-200, 201, at::TensorOptions().dtype(at::kLong));
  // Integer buckets: exact equality, including the float32 log boundaries at 16, 32 and 64.
  EXPECT_TRUE(at::equal(relative_position_bucket(rel, true, 32, 128), dump.tensor("buckets.bidirectional")));
  EXPECT_TRUE(at::equal(relative_position_bucket(rel, false, 32, 128), dump.tensor("buckets.causal")));
}

TEST(T5Forward, EncoderMatchesTransformers) {
  for (const char* name : kModels) {
    const T5Model model = load_t5(t5_dir(name));
    const SafetensorsFile dump = t5_dump(name);
    const at::Tensor hidden =
        encode(model, dump.tensor("enc.input_ids"), dump.tensor("enc.attention_mask"), {});
    // fp32 through 2 blocks of 32-wide matmuls: only summation-order rounding (~1e-7 relative) differs.
    expect_close(std::string(name) + " encoder_hidden", hidden, dump.tensor("encoder_hidden"), 1e-5);
  }
}

TEST(T5Forward, LogitsAndLossMatchTransformers) {
  for (const char* name : kModels) {
    const T5Model model = load_t5(t5_dir(name));
    const SafetensorsFile dump = t5_dump(name);
    const Seq2SeqInputs in = inputs_of(dump);
    EXPECT_TRUE(at::equal(shift_right(in.labels, model.config), dump.tensor("decoder_input_ids"))) << name;
    const Seq2SeqOutput out = seq2seq_forward(model, in, {});
    // Logits of O(10) magnitude, fp32 ops in the same order as HF: rounding only.
    expect_close(std::string(name) + " logits", out.logits, dump.tensor("logits"), 1e-5);
    expect_close(std::string(name) + " loss", out.loss, dump.tensor("loss"), 1e-5);
  }
}

TEST(T5Forward, StepwiseDecodingEqualsTeacherForcing) {
  const T5Model model = load_t5(t5_dir("t5_v1_1"));
  const SafetensorsFile dump = t5_dump("t5_v1_1");
  const at::Tensor ids = dump.tensor("enc.input_ids"), mask = dump.tensor("enc.attention_mask");
  const at::Tensor dec = dump.tensor("decoder_input_ids");
  const T5CrossKV cross = precompute_cross_kv(model, encode(model, ids, mask, {}), {});
  T5KVCache full_cache, step_cache;
  const at::Tensor full = decode_step(model, dec, full_cache, cross, mask, {});
  std::vector<at::Tensor> steps;
  for (int64_t t = 0; t < dec.size(1); ++t) {  // one token, then three, then the rest: any split works
    const int64_t n = t == 1 ? 3 : 1;
    steps.push_back(
        decode_step(model, dec.narrow(1, t, std::min(n, dec.size(1) - t)), step_cache, cross, mask, {}));
    t += std::min(n, dec.size(1) - t) - 1;
  }
  EXPECT_EQ(step_cache.length(), dec.size(1));
  expect_close("stepwise vs teacher-forced logits", at::cat(steps, 1), full, 1e-5);
  expect_close("stepwise vs HF logits", at::cat(steps, 1), dump.tensor("logits"), 1e-5);
}

TEST(T5Forward, HalfPrecisionsMatchTransformers) {
  for (const char* name : kModels) {
    const SafetensorsFile dump = t5_dump(name);
    for (const auto& [dtype, key] :
         {std::pair{at::kBFloat16, "bf16.logits"}, std::pair{at::kHalf, "fp16.logits"}}) {
      T5Model model = load_t5(t5_dir(name));
      model.to(dtype);
      // HF keeps wo in fp32 for fp16 loads only.
      EXPECT_EQ(model.encoder.blocks[0].ff.wo.base.weight.scalar_type(),
                dtype == at::kHalf ? at::kFloat : dtype);
      const Seq2SeqOutput out = seq2seq_forward(model, inputs_of(dump), {});
      EXPECT_EQ(out.logits.scalar_type(), dtype);
      // Same kernels and op order as HF on CPU (bf16 comes out bit-equal here); allow 2 ulps of the half
      // type at |logit| in [8, 16) for kernels that dispatch differently on another CPU.
      expect_close(std::string(name) + " " + key, out.logits, dump.tensor(key),
                   dtype == at::kHalf ? 1.6e-2 : 0.125);
    }
  }
}

TEST(T5Lora, ForwardLossAndGradsMatchPeft) {
  T5Model model = load_t5(t5_dir("t5_v1_1"));
  peft::PeftModelView view = peft::peft_view(model);
  const peft::LoraSummary adapter = peft::load_adapter(view, t5_dir("t5_v1_1_lora"), {/*is_trainable=*/true});
  EXPECT_EQ(view.base_model_class, "T5ForConditionalGeneration");
  // Encoder: 2 blocks x {q, v}; decoder: 2 blocks x {self, cross} x {q, v}; each A and B.
  ASSERT_EQ(adapter.trainable.size(), 24u);
  EXPECT_EQ(adapter.trainable[0].key, "encoder.block.0.layer.0.SelfAttention.q.lora_A.weight");
  EXPECT_TRUE(model.decoder.blocks[1].cross_attention.v.lora.defined());
  EXPECT_FALSE(model.decoder.blocks[1].cross_attention.k.lora.defined());

  const SafetensorsFile base = t5_dump("t5_v1_1");
  const SafetensorsFile dump = t5_dump("t5_v1_1_lora");
  const Seq2SeqOutput out = seq2seq_forward(model, inputs_of(base), {});
  expect_close("lora logits", out.logits, dump.tensor("logits"), 1e-5);
  expect_close("lora loss", out.loss, dump.tensor("loss"), 1e-5);
  out.loss.backward();
  double worst = 0;
  for (const peft::AdapterTensor& t : adapter.trainable) {
    ASSERT_TRUE(t.tensor->grad().defined()) << t.key;
    const std::string key = "grad." + t.key.substr(0, t.key.size() - 7) + ".default.weight";
    worst = std::max(worst, t5_testing::max_abs_diff(t.tensor->grad(), dump.tensor(key)));
  }
  std::printf("[ parity   ] lora grads (24 tensors) max|diff| = %.3g (tol 1e-5)\n", worst);
  EXPECT_LE(worst, 1e-5);  // fp32 gradients of O(1) magnitude: rounding only
}

TEST(T5Lora, MergedEqualsAdapter) {
  T5Model model = load_t5(t5_dir("t5_v1_1"));
  peft::PeftModelView view = peft::peft_view(model);
  peft::load_adapter(view, t5_dir("t5_v1_1_lora"));
  const Seq2SeqInputs in = inputs_of(t5_dump("t5_v1_1"));
  at::NoGradGuard no_grad;
  const at::Tensor with_adapter = seq2seq_forward(model, in, {}).logits;
  peft::merge_and_unload(view);
  // Merging rounds W + B A * s once per weight (~1e-7 relative): a few 1e-6 on O(10) logits.
  expect_close("merged vs adapter logits", seq2seq_forward(model, in, {}).logits, with_adapter, 5e-5);
}

}  // namespace
}  // namespace qlora::models

namespace qlora::models {
namespace {

// save_adapter -> load_adapter gives the same logits. The folder is left in QLORA_T5_ADAPTER_OUT when
// set, for tools/check_t5_peft.py to load with real PEFT.
TEST(T5Lora, SavedAdapterLoadsBack) {
  T5Model model = load_t5(t5_dir("t5_v1_1"));
  peft::PeftModelView view = peft::peft_view(model);
  const peft::LoraSummary adapter = peft::load_adapter(view, t5_dir("t5_v1_1_lora"));
  const char* keep = std::getenv("QLORA_T5_ADAPTER_OUT");
  const std::string dir =
      keep ? std::string(keep) : ::testing::TempDir() + "/t5_adapter_" + std::to_string(::getpid());
  peft::save_adapter(dir, view, adapter);

  T5Model fresh = load_t5(t5_dir("t5_v1_1"));
  peft::PeftModelView fresh_view = peft::peft_view(fresh);
  peft::LoadAdapterReport report;
  peft::load_adapter(fresh_view, dir, {}, &report);
  EXPECT_TRUE(report.unexpected.empty());
  at::NoGradGuard no_grad;
  const Seq2SeqInputs in = inputs_of(t5_dump("t5_v1_1"));
  EXPECT_TRUE(at::equal(seq2seq_forward(fresh, in, {}).logits, seq2seq_forward(model, in, {}).logits));
  if (keep) {
    std::printf("[ info     ] adapter written to %s\n", dir.c_str());
  } else {
    fsys::remove_all(dir);
  }
}

}  // namespace
}  // namespace qlora::models

namespace qlora::models {
namespace {

// HF stores encoder.embed_tokens.weight / decoder.embed_tokens.weight as tied aliases in some checkpoints.
TEST(T5Load, AcceptsEqualEmbedTokensAliasesOnly) {
  const T5Config config = T5Config::from_hf_config(HfConfig::load(t5_dir("t5_v1_0")));
  const Checkpoint ckpt = open_checkpoint(t5_dir("t5_v1_0"));
  NamedTensors tensors;
  for (const std::string& name : ckpt.names()) tensors.emplace_back(name, ckpt.tensor(name).clone());
  const at::Tensor shared = ckpt.tensor("shared.weight");
  tensors.emplace_back("encoder.embed_tokens.weight", shared.clone());
  tensors.emplace_back("decoder.embed_tokens.weight", shared.clone());
  const std::string path = ::testing::TempDir() + "/t5_alias_" + std::to_string(::getpid()) + ".safetensors";
  save_safetensors(path, tensors, {{"format", "pt"}});
  T5LoadReport report;
  load_t5(config, path, &report);
  EXPECT_EQ(report.ignored.size(), 2u);
  EXPECT_TRUE(report.unused.empty());

  tensors.back().second = shared + 1;  // no longer the same tensor: not a tie HF would accept silently
  save_safetensors(path, tensors, {{"format", "pt"}});
  EXPECT_NE(qlora_test::error_of([&] { load_t5(config, path); }).find("decoder.embed_tokens.weight"),
            std::string::npos);
  fsys::remove_file(path);
}

TEST(T5Forward, Fp16OverflowIsClampedAsTransformers) {
  const SafetensorsFile dump = t5_dump("t5_v1_0");
  T5Model model = load_t5(t5_dir("t5_v1_0"));
  model.to(at::kHalf);
  {
    at::NoGradGuard
        no_grad;  // the scale of tools/gen_t5_fixtures.py OVERFLOW_SCALE, applied in fp16 as there
    model.encoder.blocks[0].self_attention.o.base.weight.mul_(30000.0);
  }
  const Seq2SeqOutput out = seq2seq_forward(model, inputs_of(dump), {});
  EXPECT_FALSE(out.logits.isnan().any().item<bool>());
  // As HalfPrecisionsMatchTransformers: at most 2 fp16 ulps of O(10) logits.
  expect_close("t5_v1_0 fp16_overflow.logits", out.logits, dump.tensor("fp16_overflow.logits"), 1.6e-2);
}

}  // namespace
}  // namespace qlora::models
