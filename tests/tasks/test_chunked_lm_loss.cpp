// The training losses of the causal-LM and seq2seq tasks run the output head on chunks of the label
// tokens, recomputed in backward (nn/lm_loss.h, train.loss_chunk_tokens), so that [B, T, V] logits never
// exist. On the tiny fixtures of every head variant (LLaMA-3 untied, Qwen2 tied, MPT tied (PhoGPT) and
// untied with logit_scale, T5 v1.0 tied + rescaled, T5 v1.1 untied) with LoRA on q / v and on lm_head
// (where the model has one), right padding and -100 labels: the loss and every LoRA gradient equal the
// full-logits computation (transformers' ForCausalLMLoss / T5's CrossEntropyLoss written out over
// model.forward's logits) for chunk sizes that do not divide the label count, one that does, and one
// larger than it, with gradient checkpointing off and on. A head wrapped by the test shows that no call
// sees more than a chunk of rows, and that backward recomputes each chunk once.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "parity.h"
#include "qlora/models/causal_lm.h"
#include "qlora/models/t5.h"
#include "qlora/nn/lm_loss.h"
#include "qlora/peft/lora_model.h"
#include "qlora/tasks/seq2seq_task.h"
#include "qlora/tasks/sft_task.h"

namespace qlora::tasks {
namespace {

using testing::expect_close;

const std::string kModels = std::string(QLORA_FIXTURES_DIR) + "/models/";

// Both sides run the same float32 kernels; the chunked side sums the per-chunk losses in another order
// and multiplies fewer rows per head matmul (BLAS may block them differently). Measured: <= 5.1e-7
// relative on the losses and gradients below; a lost chunk, a wrong shift or a missed recompute is off
// by >= 1e-2.
constexpr double kTol = 2e-6;

// Label counts: causal 7 + 4 = 11 scored positions (of 2 x 9), seq2seq 6 + 4 = 10 (of 2 x 6). Chunks
// 1, 3, 7 leave a partial last chunk, 11 / 10 is one exact chunk (no recompute), 64 is larger than all.
const std::vector<int64_t> kChunks = {1, 3, 7, 11, 64};

nn::ForwardContext training_ctx(bool checkpointing) {
  nn::ForwardContext ctx;
  ctx.training = true;  // T5's dropout_rate is on: a seeded generator makes both runs draw alike
  ctx.generator = at::make_generator<at::CPUGeneratorImpl>(1234);
  ctx.gradient_checkpointing = checkpointing;
  return ctx;
}

// LoRA r 4 on the `targets` the view has; B drawn at random (PEFT's B = 0 would leave A's gradient 0).
peft::LoraSummary attach(peft::PeftModelView& view, const std::vector<std::string>& targets) {
  std::vector<std::string> present;
  for (const auto& t : targets) {
    for (const auto& [name, linear] : view.linears) {
      if (name == t || (name.size() > t.size() && name.compare(name.size() - t.size(), t.size(), t) == 0 &&
                        name[name.size() - t.size() - 1] == '.')) {
        present.push_back(t);
        break;
      }
    }
  }
  peft::LoraConfig config;
  config.r = 4;
  config.lora_alpha = 8;
  config.target_modules = peft::NameSpec::list(present);
  peft::LoraSummary adapter = peft::attach_lora(view, config, 11);
  at::NoGradGuard no_grad;
  const auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  for (const auto& t : adapter.trainable) {
    if (t.key.find("lora_B") != std::string::npos)
      t.tensor->copy_(at::randn(t.tensor->sizes(), gen, at::TensorOptions().dtype(at::kFloat)) * 0.2);
  }
  return adapter;
}

struct Result {
  at::Tensor loss;  // the mean over label tokens, as the tasks train on
  int64_t count = 0;
  std::vector<at::Tensor> grads;  // adapter.trainable order
};

Result backward(const at::Tensor& sum, int64_t count, const peft::LoraSummary& adapter) {
  const at::Tensor loss = sum / static_cast<double>(count);
  loss.backward();
  Result r{loss.detach(), count, {}};
  for (const auto& t : adapter.trainable) {
    r.grads.push_back(t.tensor->grad().defined() ? t.tensor->grad().clone() : at::Tensor());
    t.tensor->mutable_grad() = at::Tensor();
  }
  return r;
}

void expect_same(const std::string& what, const Result& actual, const Result& expected,
                 const peft::LoraSummary& adapter) {
  EXPECT_EQ(actual.count, expected.count) << what;
  expect_close(what + " loss", actual.loss, expected.loss, kTol);
  ASSERT_EQ(actual.grads.size(), expected.grads.size());
  for (size_t i = 0; i < expected.grads.size(); ++i) {
    const std::string key = adapter.trainable[i].key;
    ASSERT_TRUE(expected.grads[i].defined()) << key;
    ASSERT_TRUE(actual.grads[i].defined()) << what << " " << key << " got no gradient";
    expect_close(what + " " + key, actual.grads[i], expected.grads[i], kTol);
  }
}

// --- causal LM -----------------------------------------------------------------------------------------

struct CausalBatch {
  models::CausalLmInputs in;
  at::Tensor labels;  // [B, T], -100 on the first two (prompt) tokens and on padding
};

CausalBatch causal_batch(int64_t V) {
  const auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  CausalBatch b;
  b.in.input_ids = at::randint(V, {2, 9}, gen, at::TensorOptions().dtype(at::kLong));
  b.in.attention_mask = at::ones({2, 9}, at::kLong);
  b.in.attention_mask[1].narrow(0, 6, 3).fill_(0);  // row 1: 6 tokens, right padded
  b.labels = b.in.input_ids.clone();
  b.labels.narrow(1, 0, 2).fill_(nn::kIgnoreLabel);
  b.labels.masked_fill_(b.in.attention_mask.eq(0), nn::kIgnoreLabel);
  return b;
}

// transformers' ForCausalLMLoss (reduction sum) over the full logits: upcast, labels padded with -100
// and shifted left, every position scored.
at::Tensor full_logits_loss_sum(const at::Tensor& logits, const at::Tensor& labels) {
  const int64_t V = logits.size(-1);
  const at::Tensor shifted =
      at::constant_pad_nd(labels, {0, 1}, nn::kIgnoreLabel).narrow(1, 1, labels.size(1));
  return at::cross_entropy_loss(logits.to(at::kFloat).reshape({-1, V}), shifted.reshape({-1}), {},
                                at::Reduction::Sum, nn::kIgnoreLabel);
}

void check_causal_lm(const std::string& name, const std::vector<std::string>& targets,
                     size_t expected_adapted) {
  auto model = models::load_causal_lm(kModels + name);
  peft::PeftModelView view = peft::peft_view(*model);
  const peft::LoraSummary adapter = attach(view, targets);
  ASSERT_EQ(adapter.adapted.size(), expected_adapted) << name;
  const CausalBatch b = causal_batch(model->vocab_size());
  for (bool checkpointing : {false, true}) {
    const std::string mode = name + (checkpointing ? " (checkpointing)" : "");
    nn::ForwardContext ctx = training_ctx(checkpointing);
    const at::Tensor logits = model->forward(b.in, nullptr, ctx).logits;  // [B, T, V]
    const int64_t count = b.labels.narrow(1, 1, 8).ne(nn::kIgnoreLabel).sum().item<int64_t>();
    ASSERT_EQ(count, 11);
    const Result expected = backward(full_logits_loss_sum(logits, b.labels), count, adapter);
    for (size_t i = 0; i < expected.grads.size(); ++i) {  // every adapter tensor is exercised
      ASSERT_TRUE(expected.grads[i].defined()) << adapter.trainable[i].key;
      EXPECT_GT(expected.grads[i].abs().max().item<double>(), 0.0) << adapter.trainable[i].key;
    }
    for (int64_t chunk : kChunks) {
      ctx = training_ctx(checkpointing);
      const nn::LmLossSum loss = causal_lm_loss_sum(*model, b.in, b.labels, chunk, ctx);
      expect_same(mode + " chunk " + std::to_string(chunk), backward(loss.sum, loss.count, adapter), expected,
                  adapter);
    }
    // The logits overload (generation-time callers) shifts the labels the same way.
    ctx = training_ctx(checkpointing);
    const auto [sum, n] = causal_lm_loss_sum(model->forward(b.in, nullptr, ctx).logits, b.labels);
    expect_same(mode + " logits overload", backward(sum, n, adapter), expected, adapter);
  }
}

TEST(ChunkedLmLoss, LlamaUntiedHeadEqualsFullLogits) {
  check_causal_lm("llama_llama3", {"q_proj", "v_proj", "lm_head"}, 2 * 2 + 1);
}

// A tied lm_head is not in the PEFT view (no LoRA on it): the head is embed_tokens.
TEST(ChunkedLmLoss, Qwen2TiedHeadEqualsFullLogits) {
  check_causal_lm("qwen2_tied", {"q_proj", "v_proj", "lm_head"}, 2 * 2);
}

// PhoGPT: the head is the tied wte (at::linear, no LoRA seam), q / k / v fused in Wqkv.
TEST(ChunkedLmLoss, MptTiedHeadEqualsFullLogits) { check_causal_lm("mpt_phogpt", {"Wqkv", "lm_head"}, 2); }

// An untied MPT head with logit_scale = d_model**-0.5 applied after it.
TEST(ChunkedLmLoss, MptLogitScaleHeadEqualsFullLogits) {
  check_causal_lm("mpt_variant", {"Wqkv", "lm_head"}, 2 + 1);
}

// --- seq2seq --------------------------------------------------------------------------------------------

void check_t5(const std::string& name, size_t expected_adapted) {
  models::T5Model model = models::load_t5(kModels + name);
  peft::PeftModelView view = peft::peft_view(model);
  const peft::LoraSummary adapter = attach(view, {"q", "v", "lm_head"});
  ASSERT_EQ(adapter.adapted.size(), expected_adapted) << name;
  const int64_t V = model.config.vocab_size;
  const auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const auto longs = at::TensorOptions().dtype(at::kLong);
  models::Seq2SeqInputs in;
  in.input_ids = at::randint(V, {2, 7}, gen, longs);
  in.attention_mask = at::ones({2, 7}, longs);
  in.attention_mask[1].narrow(0, 5, 2).fill_(0);
  in.labels = at::randint(V, {2, 6}, gen, longs);
  in.labels[1].narrow(0, 4, 2).fill_(nn::kIgnoreLabel);  // row 1: 4 target tokens, padded
  for (bool checkpointing : {false, true}) {
    const std::string mode = name + (checkpointing ? " (checkpointing)" : "");
    nn::ForwardContext ctx = training_ctx(checkpointing);
    const models::Seq2SeqOutput out = models::seq2seq_forward(model, in, ctx);  // full logits, HF's mean
    const Result expected = backward(out.loss * 10.0, 10, adapter);
    for (size_t i = 0; i < expected.grads.size(); ++i) {
      ASSERT_TRUE(expected.grads[i].defined()) << adapter.trainable[i].key;
      EXPECT_GT(expected.grads[i].abs().max().item<double>(), 0.0) << adapter.trainable[i].key;
    }
    for (int64_t chunk : {int64_t{1}, int64_t{3}, int64_t{7}, int64_t{10}, int64_t{64}}) {
      ctx = training_ctx(checkpointing);
      const nn::LmLossSum loss = seq2seq_loss_sum(model, in, chunk, ctx);
      expect_same(mode + " chunk " + std::to_string(chunk), backward(loss.sum, loss.count, adapter), expected,
                  adapter);
    }
  }
}

TEST(ChunkedLmLoss, T5TiedRescaledHeadEqualsFullLogits) {
  ASSERT_TRUE(models::load_t5(kModels + "t5_v1_0").config.scale_decoder_outputs);
  check_t5("t5_v1_0", 2 * 2 + 2 * 4);  // 2 blocks x (encoder q, v; decoder self and cross q, v); tied head
}

TEST(ChunkedLmLoss, T5UntiedHeadEqualsFullLogits) { check_t5("t5_v1_1", 2 * 2 + 2 * 4 + 1); }  // + lm_head

// --- memory: what the head sees -----------------------------------------------------------------------

// Rows of every head call, in call order.
struct HeadSpy {
  std::vector<int64_t> rows;
  int64_t vocab = 0;
  nn::OutputHead wrap(models::CausalLM* model, const nn::ForwardContext& ctx) {
    return [this, model, ctx](const at::Tensor& x) {
      at::Tensor logits = model->output_head(x, ctx);
      rows.push_back(logits.size(0));
      vocab = logits.size(1);
      return logits;
    };
  }
};

// Only label positions reach the head (11 of 2 x 9), at most `chunk` at a time, in the forward and in
// backward's recompute (once per chunk); a chunk as large as the label count runs once, unrecomputed.
TEST(ChunkedLmLoss, HeadNeverSeesMoreThanAChunk) {
  auto model = models::load_causal_lm(kModels + "llama_llama3");
  peft::PeftModelView view = peft::peft_view(*model);
  const peft::LoraSummary adapter = attach(view, {"q_proj", "v_proj", "lm_head"});
  const CausalBatch b = causal_batch(model->vocab_size());
  const at::Tensor labels = nn::shift_labels_left(b.labels);
  for (int64_t chunk : {int64_t{0}, int64_t{1}, int64_t{3}, int64_t{7}, int64_t{11}, int64_t{64}}) {
    const nn::ForwardContext ctx = training_ctx(true);
    HeadSpy spy;
    const at::Tensor hidden = model->hidden_states(b.in, nullptr, ctx);
    nn::LmLossOptions options;
    options.chunk_tokens = chunk;
    const nn::LmLossSum loss = nn::lm_loss_sum(hidden, labels, spy.wrap(model.get(), ctx), options, ctx);
    const int64_t chunks = chunk == 0 ? 1 : (11 + chunk - 1) / chunk;
    ASSERT_EQ(spy.rows.size(), static_cast<size_t>(chunks)) << "forward calls, chunk " << chunk;
    loss.sum.backward();
    const bool recomputed = chunks > 1;
    ASSERT_EQ(spy.rows.size(), static_cast<size_t>(recomputed ? 2 * chunks : chunks)) << "chunk " << chunk;
    int64_t forward_rows = 0;
    for (size_t i = 0; i < spy.rows.size(); ++i) {
      EXPECT_LE(spy.rows[i], chunk == 0 ? 11 : chunk) << "call " << i << ", chunk " << chunk;
      if (i < static_cast<size_t>(chunks)) forward_rows += spy.rows[i];
    }
    EXPECT_EQ(forward_rows, 11) << "chunk " << chunk;  // each label position scored once
    EXPECT_EQ(spy.vocab, model->vocab_size());
    for (const auto& t : adapter.trainable) t.tensor->mutable_grad() = at::Tensor();
  }
}

// Evaluation (no grad) takes the same path: the same loss, one head call per chunk, nothing recorded.
TEST(ChunkedLmLoss, EvaluationUnderNoGradEqualsFullLogits) {
  auto model = models::load_causal_lm(kModels + "qwen2_tied");
  const CausalBatch b = causal_batch(model->vocab_size());
  at::NoGradGuard no_grad;
  const at::Tensor expected = full_logits_loss_sum(model->forward(b.in, nullptr, {}).logits, b.labels);
  for (int64_t chunk : kChunks) {
    HeadSpy spy;
    const at::Tensor hidden = model->hidden_states(b.in, nullptr, {});
    nn::LmLossOptions options;
    options.chunk_tokens = chunk;
    const nn::LmLossSum loss =
        nn::lm_loss_sum(hidden, nn::shift_labels_left(b.labels), spy.wrap(model.get(), {}), options, {});
    EXPECT_FALSE(loss.sum.requires_grad());
    EXPECT_EQ(spy.rows.size(), static_cast<size_t>((11 + chunk - 1) / chunk));
    expect_close("eval chunk " + std::to_string(chunk), loss.sum, expected, kTol);
  }
}

// A batch without any label: a zero loss that still backpropagates (the trainer calls backward on it).
TEST(ChunkedLmLoss, NoLabelGivesAZeroLossWithAGraph) {
  auto model = models::load_causal_lm(kModels + "llama_llama3");
  peft::PeftModelView view = peft::peft_view(*model);
  const peft::LoraSummary adapter = attach(view, {"q_proj", "v_proj"});
  CausalBatch b = causal_batch(model->vocab_size());
  b.labels.fill_(nn::kIgnoreLabel);
  const nn::LmLossSum loss = causal_lm_loss_sum(*model, b.in, b.labels, 3, training_ctx(false));
  EXPECT_EQ(loss.count, 0);
  EXPECT_EQ(loss.sum.item<double>(), 0.0);
  ASSERT_TRUE(loss.sum.requires_grad());
  loss.sum.backward();
}

TEST(ChunkedLmLoss, ShiftLabelsLeftPadsWithIgnore) {
  const at::Tensor labels = at::tensor({1, 2, 3, -100, 5, 6}, at::kLong).view({2, 3});
  const at::Tensor expected = at::tensor({2, 3, -100, 5, 6, -100}, at::kLong).view({2, 3});
  EXPECT_TRUE(at::equal(nn::shift_labels_left(labels), expected));
}

}  // namespace
}  // namespace qlora::tasks
