// Gradient checkpointing (ForwardContext::gradient_checkpointing, one nn::checkpoint_block per block) in
// the LLaMA, MPT and T5 models, on their tiny fixtures with the PEFT LoRA adapters of
// tools/gen_llama_fixtures.py / gen_mpt_fixtures.py / gen_t5_fixtures.py, in training mode with every
// dropout the model has turned on (attention / residual / embedding / T5 dropout_rate, LoRA dropout) and a
// seeded generator: the loss and every trainable gradient equal the plain forward's bit for bit. The
// embeddings are frozen, so block 0's input needs no grad (the reentrant-checkpoint trap); T5's encoder
// output reaches the decoder's cross-attention, so the encoder's LoRA gradients are only right when
// the cross K / V are inputs of the checkpointed blocks.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/function.h>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "encoder_test_util.h"
#include "qlora/core/atomic_file.h"
#include "qlora/core/fs.h"
#include "qlora/core/jsonl.h"
#include "qlora/io/safetensors.h"
#include "qlora/models/causal_lm.h"
#include "qlora/models/t5.h"
#include "qlora/peft/lora_model.h"
#include "t5_test_util.h"

namespace qlora::models {
namespace {

using testing::model_dir;

constexpr double kDropout = 0.1;

struct Result {
  at::Tensor loss, rng_after;
  std::vector<std::pair<std::string, at::Tensor>> grads;
  int checkpoints = 0;  // checkpointed blocks in the loss's graph
};

// Nodes of nn::checkpoint_block in the autograd graph of `t`: proves the flag took effect, so that the
// equalities below do not hold merely because both runs took the plain path.
int count_checkpoints(const at::Tensor& t) {
  std::set<torch::autograd::Node*> seen;
  std::vector<torch::autograd::Node*> todo{t.grad_fn().get()};
  int n = 0;
  while (!todo.empty()) {
    torch::autograd::Node* node = todo.back();
    todo.pop_back();
    if (node == nullptr || !seen.insert(node).second) continue;
    if (node->name().find("CheckpointFunction") != std::string::npos) ++n;
    for (const auto& edge : node->next_edges()) todo.push_back(edge.function.get());
  }
  return n;
}

nn::ForwardContext training_ctx(bool checkpointing) {
  nn::ForwardContext ctx;
  ctx.training = true;
  ctx.generator = at::make_generator<at::CPUGeneratorImpl>(1234);
  ctx.gradient_checkpointing = checkpointing;
  return ctx;
}

// A copy of fixture `name` whose config.json has `edit` applied (the fixtures are saved without dropout).
std::string with_config(const std::string& name, const std::function<void(Json&)>& edit) {
  const std::string src = model_dir(name);
  const std::string dir = ::testing::TempDir() + "/ckpt_" + name;
  fsys::create_directories(dir);
  Json config = Json::parse(read_file(src + "/config.json"));
  edit(config);
  write_file_atomic(dir + "/config.json", config.dump(2));
  write_file_atomic(dir + "/model.safetensors", read_file(src + "/model.safetensors"));
  return dir;
}

// Next-token cross entropy at real tokens, as transformers' ForCausalLMLoss with labels = input_ids.
at::Tensor causal_lm_loss(const at::Tensor& logits, const CausalLmInputs& in) {
  const int64_t T = logits.size(1), V = logits.size(2);
  const at::Tensor labels =
      in.input_ids.narrow(1, 1, T - 1).masked_fill(in.attention_mask.narrow(1, 1, T - 1).eq(0), -100);
  return at::cross_entropy_loss(logits.narrow(1, 0, T - 1).reshape({-1, V}), labels.reshape({-1}), {},
                                at::Reduction::Mean, -100);
}

Result causal_lm_step(const std::string& dir, const std::string& adapter_dir, const SafetensorsFile& dump,
                      bool checkpointing) {
  auto model = load_causal_lm(dir);
  peft::PeftModelView view = peft::peft_view(*model);
  const peft::LoraSummary adapter = peft::load_adapter(view, adapter_dir, {/*is_trainable=*/true});
  for (auto& [name, linear] : view.linears) linear->lora.dropout = kDropout;  // the adapters have none
  CausalLmInputs in;
  in.input_ids = dump.tensor("right.input_ids");
  in.attention_mask = dump.tensor("right.attention_mask");
  nn::ForwardContext ctx = training_ctx(checkpointing);
  const at::Tensor loss = causal_lm_loss(model->forward(in, nullptr, ctx).logits, in);
  const int checkpoints = count_checkpoints(loss);
  loss.backward();
  Result r{loss.detach(), ctx.generator->get_state(), {}, checkpoints};
  for (const auto& t : adapter.trainable) r.grads.emplace_back(t.key, t.tensor->grad());
  return r;
}

// Bit-identical: the recompute replays the same float32 kernels on the same inputs with the same masks.
void expect_same(const Result& plain, const Result& ckpt, const std::string& layer0, int blocks) {
  EXPECT_EQ(plain.checkpoints, 0);
  EXPECT_EQ(ckpt.checkpoints, blocks);
  EXPECT_EQ(plain.loss.item<double>(), ckpt.loss.item<double>());
  EXPECT_TRUE(at::equal(plain.rng_after, ckpt.rng_after));  // the generator ends where the plain run's did
  ASSERT_EQ(plain.grads.size(), ckpt.grads.size());
  ASSERT_FALSE(plain.grads.empty());
  bool saw_layer0 = false;
  for (size_t i = 0; i < plain.grads.size(); ++i) {
    const auto& [key, expected] = plain.grads[i];
    const at::Tensor& actual = ckpt.grads[i].second;
    ASSERT_TRUE(expected.defined()) << key;
    ASSERT_TRUE(actual.defined()) << key << " got no gradient with checkpointing";
    EXPECT_TRUE(at::equal(actual, expected))
        << key << " max diff " << testing::max_abs_diff(actual, expected);
    if (key.find(layer0) != std::string::npos) {
      saw_layer0 = true;
      EXPECT_GT(actual.abs().max().item<double>(), 0.0) << key;
    }
  }
  EXPECT_TRUE(saw_layer0) << layer0;
}

TEST(DecoderCheckpointing, LlamaLossAndLoraGradientsEqualThePlainForward) {
  const std::string dir = with_config("llama_llama3", [](Json& c) { c["attention_dropout"] = kDropout; });
  const std::string lora = model_dir("llama_llama3") + "/lora";
  const SafetensorsFile dump = testing::hf_outputs("llama_llama3");
  expect_same(causal_lm_step(dir, lora, dump, false), causal_lm_step(dir, lora, dump, true), "layers.0.", 2);
}

TEST(DecoderCheckpointing, MptLossAndLoraGradientsEqualThePlainForward) {
  const std::string dir = with_config("mpt_phogpt", [](Json& c) {
    c["emb_pdrop"] = kDropout;
    c["resid_pdrop"] = kDropout;
    c["attn_config"]["attn_pdrop"] = kDropout;
  });
  const std::string lora = model_dir("mpt_phogpt") + "/lora";
  const SafetensorsFile dump = SafetensorsFile::open(model_dir("mpt_phogpt") + "/outputs.safetensors");
  expect_same(causal_lm_step(dir, lora, dump, false), causal_lm_step(dir, lora, dump, true), "blocks.0.", 2);
}

// A KV cache (generation) turns checkpointing off: the cache holds the forward's keys once, with their
// graph, and the logits are the plain ones.
TEST(DecoderCheckpointing, LlamaWithACacheDoesNotCheckpoint) {
  auto model = load_causal_lm(model_dir("llama_llama3"));
  peft::PeftModelView view = peft::peft_view(*model);
  peft::load_adapter(view, model_dir("llama_llama3") + "/lora", {/*is_trainable=*/true});
  const SafetensorsFile dump = testing::hf_outputs("llama_llama3");
  CausalLmInputs in;
  in.input_ids = dump.tensor("right.input_ids");
  in.attention_mask = dump.tensor("right.attention_mask");
  KvCache plain_cache, ckpt_cache;
  const at::Tensor plain = model->forward(in, &plain_cache, training_ctx(false)).logits;
  const at::Tensor ckpt = model->forward(in, &ckpt_cache, training_ctx(true)).logits;
  EXPECT_TRUE(at::equal(plain, ckpt));
  ASSERT_EQ(ckpt_cache.keys.size(), static_cast<size_t>(model->num_layers()));
  EXPECT_TRUE(
      ckpt_cache.values[1].requires_grad());  // v_proj has LoRA: recorded by autograd, not in a checkpoint
  EXPECT_TRUE(at::equal(ckpt_cache.values[1], plain_cache.values[1]));
}

Result t5_step(bool checkpointing) {
  T5Model model = load_t5(t5_testing::t5_dir("t5_v1_1"));
  EXPECT_GT(model.config.dropout_rate, 0.0);  // 0.1: T5's own dropout is on in training
  peft::PeftModelView view = peft::peft_view(model);
  const peft::LoraSummary adapter =
      peft::load_adapter(view, t5_testing::t5_dir("t5_v1_1_lora"), {/*is_trainable=*/true});
  for (auto& [name, linear] : view.linears) linear->lora.dropout = kDropout;
  const SafetensorsFile dump = t5_testing::t5_dump("t5_v1_1");
  const Seq2SeqInputs in{
      dump.tensor("enc.input_ids"), dump.tensor("enc.attention_mask"), dump.tensor("labels"), {}};
  nn::ForwardContext ctx = training_ctx(checkpointing);
  const at::Tensor loss = seq2seq_forward(model, in, ctx).loss;
  const int checkpoints = count_checkpoints(loss);
  loss.backward();
  Result r{loss.detach(), ctx.generator->get_state(), {}, checkpoints};
  for (const auto& t : adapter.trainable) r.grads.emplace_back(t.key, t.tensor->grad());
  return r;
}

TEST(DecoderCheckpointing, T5LossAndLoraGradientsEqualThePlainForward) {
  const Result plain = t5_step(false), ckpt = t5_step(true);
  ASSERT_EQ(plain.grads.size(), 24u);  // encoder q, v; decoder self and cross q, v; 2 blocks each; A and B
  expect_same(plain, ckpt, "encoder.block.0.", 4);  // 2 encoder + 2 decoder blocks
  expect_same(plain, ckpt, "decoder.block.0.", 4);
}

// Evaluation under no-grad ignores the flag.
TEST(DecoderCheckpointing, T5NoEffectWithoutGrad) {
  const T5Model model = load_t5(t5_testing::t5_dir("t5_v1_1"));
  const SafetensorsFile dump = t5_testing::t5_dump("t5_v1_1");
  const Seq2SeqInputs in{
      dump.tensor("enc.input_ids"), dump.tensor("enc.attention_mask"), dump.tensor("labels"), {}};
  at::NoGradGuard no_grad;
  nn::ForwardContext ctx;
  ctx.gradient_checkpointing = true;
  EXPECT_TRUE(at::equal(seq2seq_forward(model, in, ctx).logits, seq2seq_forward(model, in, {}).logits));
}

}  // namespace
}  // namespace qlora::models
