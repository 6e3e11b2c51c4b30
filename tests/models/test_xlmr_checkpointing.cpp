// Gradient checkpointing of the encoder (ForwardContext::gradient_checkpointing, one block per layer)
// on the tiny XLM-R QA fixture with its PEFT LoRA adapter, in training mode with dropout everywhere
// (hidden, attention, LoRA) drawn from a seeded generator: loss and every trainable gradient equal
// the plain forward's. The embeddings are frozen, so layer 0's input does not require grad: the
// reentrant-checkpoint trap, which must still train layer 0's LoRA.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "models/encoder_test_util.h"
#include "qlora/models/encoder.h"
#include "qlora/peft/lora_model.h"

namespace qlora::models {
namespace {

using testing::hf_outputs;
using testing::inputs_of;
using testing::model_dir;

struct Result {
  at::Tensor loss, rng_after;
  std::vector<std::pair<std::string, at::Tensor>> grads;
};

Result train_step(bool checkpointing) {
  EncoderModel model = load_encoder(model_dir("tiny-xlmr-qa"), {EncoderHead::kQuestionAnswering});
  peft::PeftModelView view = peft::peft_view(model);
  const peft::LoraSummary adapter = peft::load_adapter(view, model_dir("tiny-xlmr-qa-lora"), {true});
  for (auto& [name, linear] : view.linears) linear->lora.dropout = 0.1;  // the fixture's adapter has none
  const SafetensorsFile dump = hf_outputs("tiny-xlmr-qa");
  nn::ForwardContext ctx;
  ctx.training = true;
  ctx.generator = at::make_generator<at::CPUGeneratorImpl>(1234);
  ctx.gradient_checkpointing = checkpointing;
  const QaLogits logits = qa_forward(model, inputs_of(dump, "padded", false), ctx);
  const at::Tensor loss = qa_loss(logits.start, logits.end, dump.tensor("padded.start_positions"),
                                  dump.tensor("padded.end_positions"));
  loss.backward();
  Result r{loss.detach(), ctx.generator->get_state(), {}};
  for (const auto& t : adapter.trainable) r.grads.emplace_back(t.key, t.tensor->grad());
  return r;
}

TEST(XlmrCheckpointing, LossAndLoraGradientsEqualThePlainForward) {
  const Result plain = train_step(false), ckpt = train_step(true);
  EXPECT_EQ(plain.loss.item<double>(), ckpt.loss.item<double>());  // same kernels, same dropout masks
  EXPECT_TRUE(at::equal(plain.rng_after, ckpt.rng_after));
  ASSERT_EQ(plain.grads.size(), ckpt.grads.size());
  bool saw_layer0 = false;
  for (size_t i = 0; i < plain.grads.size(); ++i) {
    const auto& [key, expected] = plain.grads[i];
    const at::Tensor& actual = ckpt.grads[i].second;
    ASSERT_TRUE(actual.defined()) << key << " got no gradient with checkpointing";
    ASSERT_TRUE(expected.defined()) << key;
    // Bit-identical: the recompute replays the same float32 kernels on the same inputs.
    EXPECT_TRUE(at::equal(actual, expected))
        << key << " max diff " << testing::max_abs_diff(actual, expected);
    if (key.find("layer.0.") != std::string::npos) {
      saw_layer0 = true;
      EXPECT_GT(actual.abs().max().item<double>(), 0.0) << key;
    }
  }
  EXPECT_TRUE(saw_layer0);
}

// Evaluation under no-grad ignores the flag: the same logits as without it.
TEST(XlmrCheckpointing, NoEffectWithoutGrad) {
  const EncoderModel model = load_encoder(model_dir("tiny-xlmr-qa"), {EncoderHead::kQuestionAnswering});
  const EncoderInputs in = inputs_of(hf_outputs("tiny-xlmr-qa"), "padded", false);
  at::NoGradGuard no_grad;
  nn::ForwardContext ctx;
  ctx.gradient_checkpointing = true;
  EXPECT_TRUE(at::equal(qa_forward(model, in, ctx).start, qa_forward(model, in, {}).start));
}

}  // namespace
}  // namespace qlora::models
