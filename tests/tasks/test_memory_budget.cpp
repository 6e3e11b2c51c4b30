// The dry-run memory budget: exact parameter counts (checked against figures transformers and PEFT
// print for LLaMA-2-7B, and against the loaded fixture models' own tables), and the component rules.
#include <gtest/gtest.h>

#include "qlora/config/run_config.h"
#include "qlora/io/hf_config.h"
#include "qlora/models/encoder.h"
#include "qlora/models/model_shape.h"
#include "qlora/peft/lora_model.h"
#include "qlora/tasks/memory_budget.h"

namespace qlora::tasks {
namespace {

const std::string kSource = QLORA_SOURCE_DIR;

config::RunConfig qlora_7b_config() {
  return config::load_run_config(kSource + "/configs/llama2_7b_qlora_t4.yaml",
                                 {"model.path=" + kSource + "/configs/models/llama2-7b-shape"});
}

int64_t component(const MemoryBudget& m, const std::string& name) {
  for (const auto& c : m.components)
    if (c.name == name) return c.bytes;
  ADD_FAILURE() << "no component " << name;
  return -1;
}

TEST(ModelShape, Llama2_7bParameterCountIsTransformers) {
  const auto shape = models::model_shape(HfConfig::load(kSource + "/configs/models/llama2-7b-shape"));
  // sum(p.numel() for p in LlamaForCausalLM(Llama-2-7b config).parameters()) = 6,738,415,616.
  EXPECT_EQ(shape.total_params(), 6738415616);
  EXPECT_EQ(shape.linears.size(), 32u * 7 + 1);
}

TEST(MemoryBudget, Llama2_7bLoraR32AllLinearTrainableIsPeft) {
  const auto cfg = qlora_7b_config();
  const auto m = memory_budget(cfg, models::model_shape(HfConfig::load(cfg.model.path)));
  // PEFT print_trainable_parameters() for Llama-2-7B, r=32, all-linear: "trainable params: 79,953,920".
  EXPECT_EQ(m.trainable_params, 79953920);
  EXPECT_EQ(component(m, "adapter_weights"), 79953920LL * 4);
  EXPECT_EQ(component(m, "optimizer_states"), 79953920LL * 8);
  // The target: a 7B LLaMA at seq 1024, micro batch 1, r 32, checkpointing fits a 15 GB T4.
  EXPECT_LT(m.total_bytes(), 15LL * 1000 * 1000 * 1000) << m.to_table();
  // Every linear but lm_head is 4-bit: 6,738,415,616 - 2 * 32000 * 4096 (embeddings, head) - norms.
  EXPECT_EQ(m.quantized_params, 6738415616LL - 2LL * 32000 * 4096 - 65LL * 4096);
}

TEST(MemoryBudget, BitsPerParameterOfNf4DoubleQuant) {
  // QLoRA paper section 4: 4 + 8/64 + 32/(64*256) = 4.127 bits at block 64 with DQ; 4.5 without.
  EXPECT_NEAR(bits_per_param_4bit(64, true), 4.127, 5e-4);
  EXPECT_DOUBLE_EQ(bits_per_param_4bit(64, false), 4.5);
}

TEST(MemoryBudget, GradientCheckpointingShrinksActivations) {
  auto cfg = qlora_7b_config();
  const auto shape = models::model_shape(HfConfig::load(cfg.model.path));
  const auto with = memory_budget(cfg, shape);
  cfg.train.gradient_checkpointing = false;
  const auto without = memory_budget(cfg, shape);
  EXPECT_LT(component(with, "activations") * 4, component(without, "activations"));
}

// The loss runs lm_head on chunks of train.loss_chunk_tokens label tokens (nn/lm_loss.h): the logits
// component is one chunk's fp32 logits, log-softmax and gradient, not the micro batch's.
TEST(MemoryBudget, LossChunkingBoundsTheLogits) {
  auto cfg = qlora_7b_config();
  const auto shape = models::model_shape(HfConfig::load(cfg.model.path));
  ASSERT_EQ(cfg.train.loss_chunk_tokens, 512);  // the default
  EXPECT_EQ(component(memory_budget(cfg, shape), "logits"), 512LL * 32000 * 4 * 3);
  cfg.train.loss_chunk_tokens = 0;  // off: every token of the micro batch (1 x 1024)
  EXPECT_EQ(component(memory_budget(cfg, shape), "logits"), 1024LL * 32000 * 4 * 3);
  cfg.train.loss_chunk_tokens = 4096;  // larger than the micro batch: the micro batch
  EXPECT_EQ(component(memory_budget(cfg, shape), "logits"), 1024LL * 32000 * 4 * 3);
  cfg.train.loss_chunk_tokens = 128;
  cfg.train.micro_batch_size = 4;
  EXPECT_EQ(component(memory_budget(cfg, shape), "logits"), 128LL * 32000 * 4 * 3);
}

TEST(MemoryBudget, FullFineTuneTrainsEveryParameter) {
  auto cfg = qlora_7b_config();
  cfg.adapter.type = "full";
  cfg.quantization.load_in_4bit = false;
  cfg.train.optim = "adamw_8bit";
  const auto shape = models::model_shape(HfConfig::load(cfg.model.path));
  const auto m = memory_budget(cfg, shape);
  EXPECT_EQ(m.trainable_params, shape.total_params());
  EXPECT_EQ(component(m, "optimizer_states"), shape.total_params() * 2);  // 8-bit m and v
  EXPECT_EQ(m.quantized_params, 0);
}

// model_shape must name and size the linears exactly as the loaded model does (PEFT's view).
TEST(ModelShape, XlmrQaMatchesLoadedModel) {
  const std::string dir = std::string(QLORA_FIXTURES_DIR) + "/models/tiny-xlmr-qa";
  const auto shape = models::model_shape(HfConfig::load(dir));
  models::EncoderLoadOptions options;
  options.head = models::EncoderHead::kQuestionAnswering;
  auto model = models::load_encoder(dir, options);
  const auto view = peft::peft_view(model);
  ASSERT_EQ(shape.linears.size(), view.linears.size());
  for (size_t i = 0; i < view.linears.size(); ++i) {
    EXPECT_EQ(shape.linears[i].module, view.linears[i].first);
    EXPECT_EQ(shape.linears[i].in, view.linears[i].second->base.in_features());
    EXPECT_EQ(shape.linears[i].out, view.linears[i].second->base.out_features());
  }
  int64_t loaded = 0;
  for (const auto& p : view.parameters) loaded += p.second->numel();
  EXPECT_EQ(shape.total_params(), loaded);
}

}  // namespace
}  // namespace qlora::tasks
