// attach_lora: PEFT's init (kaiming-uniform / gaussian A, zero B), scaling, what trains, the counts.
#include <gtest/gtest.h>

#include <cmath>

#include "peft/peft_test_util.h"
#include "qlora/nn/lora_linear.h"

namespace qlora::peft {
namespace {

using testing::case_config;

TEST(AttachLora, DefaultInitIsKaimingUniformAAndZeroB) {
  models::EncoderModel model = testing::load_qa_model();
  PeftModelView view = peft_view(model);
  LoraConfig c = case_config("all_linear");  // r 2 on every linear: in = 32 and in = 64 layers
  c.r = 16;
  const LoraSummary s = attach_lora(view, c, 7);
  ASSERT_EQ(s.adapted.size(), 13u);
  for (const std::string& m : s.adapted) {
    const nn::LoraAdapter& a = view.linear(m)->lora;
    const int64_t in = view.linear(m)->base.in_features();
    ASSERT_EQ(a.A.sizes(), (at::IntArrayRef{16, in})) << m;
    ASSERT_EQ(a.B.sizes(), (at::IntArrayRef{view.linear(m)->base.out_features(), 16})) << m;
    EXPECT_EQ(a.A.scalar_type(), at::kFloat);
    EXPECT_EQ(a.B.count_nonzero().item<int64_t>(), 0) << m;
    // kaiming_uniform_(a=sqrt(5)) on [R, in]: U(-1/sqrt(in), 1/sqrt(in)).
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    const double max_abs = a.A.abs().max().item<double>();
    EXPECT_LE(max_abs, bound) << m;
    EXPECT_GT(max_abs, 0.9 * bound) << m;  // 512+ draws reach the edge
    // Variance bound^2 / 3; 512 draws give the sample variance within ~10% at 2.5 sigma.
    const double var = a.A.to(at::kDouble).var().item<double>();
    EXPECT_NEAR(var, bound * bound / 3, 0.15 * bound * bound / 3) << m;
    EXPECT_DOUBLE_EQ(a.scaling, 2.0 / 16);
    EXPECT_TRUE(a.A.requires_grad() && a.B.requires_grad());
  }
}

TEST(AttachLora, GaussianInitHasStdOneOverR) {
  models::EncoderModel model = testing::load_qa_model();
  PeftModelView view = peft_view(model);
  LoraConfig c = case_config("all_linear");
  c.r = 4;
  c.init_lora_weights = "gaussian";
  attach_lora(view, c, 3);
  std::vector<at::Tensor> all;
  for (auto& [name, l] : view.linears) all.push_back(l->lora.A.flatten());
  const at::Tensor a = at::cat(all).to(at::kDouble);  // 13 layers x 4 x (32 or 64) = 1920 draws
  EXPECT_NEAR(a.std().item<double>(), 0.25, 0.25 * 0.06);
  EXPECT_NEAR(a.mean().item<double>(), 0.0, 0.02);
}

TEST(AttachLora, SeedDecidesA) {
  const auto first_a = [](uint64_t seed) {
    models::EncoderModel model = testing::load_qa_model();
    PeftModelView view = peft_view(model);
    attach_lora(view, case_config("list"), seed);
    return model.layers[0].query.lora.A.clone();
  };
  EXPECT_TRUE(at::equal(first_a(5), first_a(5)));
  EXPECT_FALSE(at::equal(first_a(5), first_a(6)));
}

TEST(AttachLora, ZeroBIsTheBaseModelExactly) {
  models::EncoderModel base = testing::load_qa_model();
  models::EncoderModel model = testing::load_qa_model();
  PeftModelView view = peft_view(model);
  attach_lora(view, case_config("patterns"), 1);
  const models::EncoderInputs in = testing::padded_inputs();
  EXPECT_TRUE(at::equal(models::qa_forward(model, in, {}).start, models::qa_forward(base, in, {}).start));
}

TEST(AttachLora, OnlyAdaptersHeadsAndChosenBiasesTrain) {
  models::EncoderModel model = testing::load_qa_model();
  PeftModelView view = peft_view(model);
  const LoraSummary s = attach_lora(view, case_config("list"), 0);
  EXPECT_FALSE(model.layers[0].query.base.weight.requires_grad());
  EXPECT_FALSE(model.layers[0].query.base.bias.requires_grad());
  EXPECT_FALSE(model.word_embeddings.requires_grad());
  EXPECT_TRUE(model.qa_outputs.base.weight.requires_grad());
  EXPECT_TRUE(model.qa_outputs.base.bias.requires_grad());
  EXPECT_FALSE(model.layers[0].key.lora.defined());
  ASSERT_EQ(s.trainable.size(), 4u * 2 + 2);
  // PEFT's order: XLMRobertaForQuestionAnswering registers qa_outputs before roberta.
  EXPECT_EQ(s.trainable[0].key, "qa_outputs.weight");
  EXPECT_EQ(s.trainable[2].key, "roberta.encoder.layer.0.attention.self.query.lora_A.weight");
  EXPECT_EQ(s.trainable[3].key, "roberta.encoder.layer.0.attention.self.query.lora_B.weight");
  EXPECT_EQ(s.trainable_line(), "trainable params: 1,090 || all params: 52,452 || trainable%: 2.0781");

  models::EncoderModel m2 = testing::load_qa_model();
  PeftModelView v2 = peft_view(m2);
  const LoraSummary all = attach_lora(v2, case_config("bias_all"), 0);
  EXPECT_TRUE(m2.layers[1].output_norm.bias.requires_grad());  // every bias, LayerNorm's too
  EXPECT_FALSE(m2.layers[1].output_norm.weight.requires_grad());
  EXPECT_TRUE(m2.layers[0].key.base.bias.requires_grad());
  EXPECT_FALSE(m2.layers[0].key.base.weight.requires_grad());

  models::EncoderModel m3 = testing::load_qa_model();
  PeftModelView v3 = peft_view(m3);
  attach_lora(v3, case_config("bias_lora_only"), 0);
  EXPECT_TRUE(m3.layers[0].key.base.bias.requires_grad());  // adapted
  EXPECT_FALSE(m3.layers[0].query.base.bias.requires_grad());
  EXPECT_FALSE(m3.layers[0].output_norm.bias.requires_grad());
}

TEST(AttachLora, ScalingFollowsPatternsAndRslora) {
  models::EncoderModel model = testing::load_qa_model();
  PeftModelView view = peft_view(model);
  attach_lora(view, case_config("patterns"), 0);
  EXPECT_EQ(model.layers[1].query.lora.rank(), 6);
  EXPECT_DOUBLE_EQ(model.layers[1].query.lora.scaling, 8.0 / 6);
  EXPECT_EQ(model.layers[0].value.lora.rank(), 2);
  EXPECT_DOUBLE_EQ(model.layers[0].value.lora.scaling, 4.0);
  EXPECT_DOUBLE_EQ(model.layers[0].key.lora.scaling, 5.5 / 4);
  EXPECT_DOUBLE_EQ(model.layers[0].output.lora.scaling, 3.0 / 4);

  models::EncoderModel m2 = testing::load_qa_model();
  PeftModelView v2 = peft_view(m2);
  attach_lora(v2, case_config("rslora"), 0);
  EXPECT_DOUBLE_EQ(m2.layers[0].query.lora.scaling, 8.0 / 2);  // alpha / sqrt(r)
  EXPECT_DOUBLE_EQ(m2.layers[0].query.lora.dropout, 0.1);
}

TEST(AttachLora, MergeAndUnloadDropsAdaptersAndFreezes) {
  models::EncoderModel model = testing::load_qa_model();
  PeftModelView view = peft_view(model);
  attach_lora(view, case_config("list"), 0);
  testing::fill_wave(model.layers[0].query.lora.B, 0.2, 0.0);
  const at::Tensor before = model.layers[0].query.base.weight.clone();
  const at::Tensor delta = nn::lora_delta_weight(model.layers[0].query.lora, at::kFloat);
  merge_and_unload(view);
  EXPECT_FALSE(model.layers[0].query.lora.defined());
  EXPECT_TRUE(at::allclose(model.layers[0].query.base.weight, before + delta, 0, 1e-7));
  EXPECT_FALSE(model.qa_outputs.base.weight.requires_grad());
}

}  // namespace
}  // namespace qlora::peft
