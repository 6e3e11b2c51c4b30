// LoRA on the XLM-R QA model through the one seam, against a real PEFT adapter
// (tests/fixtures/models/tiny-xlmr-qa-lora, written by tools/gen_xlmr_fixtures.py) loaded with
// peft::load_adapter: forward, loss and the gradients of every lora_A / lora_B / qa_outputs parameter;
// plus the adapter identities.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "models/encoder_test_util.h"
#include "qlora/io/safetensors.h"
#include "qlora/models/encoder.h"
#include "qlora/peft/lora_model.h"

namespace qlora::models {
namespace {

using testing::expect_close;
using testing::hf_outputs;
using testing::inputs_of;
using testing::model_dir;

const std::string kPeftPrefix = peft::kPeftKeyPrefix;

struct LoraCase {
  EncoderModel model;
  peft::LoraSummary adapter;  // trainable: lora_A / lora_B / qa_outputs tensors by adapter-file key
  SafetensorsFile dump;
  std::string batch;
  EncoderInputs inputs;

  explicit LoraCase(const std::string& batch_name)
      : model(load_encoder(model_dir("tiny-xlmr-qa"), {EncoderHead::kQuestionAnswering})),
        dump(hf_outputs("tiny-xlmr-qa-lora")),
        batch(batch_name),
        inputs(inputs_of(hf_outputs("tiny-xlmr-qa"), batch_name, false)) {
    peft::PeftModelView view = peft::peft_view(model);
    adapter = peft::load_adapter(view, model_dir("tiny-xlmr-qa-lora"), {/*is_trainable=*/true});
  }
  at::Tensor loss(const QaLogits& l) const {
    const SafetensorsFile base = hf_outputs("tiny-xlmr-qa");
    return qa_loss(l.start, l.end, base.tensor(batch + ".start_positions"),
                   base.tensor(batch + ".end_positions"));
  }
};

TEST(XlmrLora, AttachesQueryAndValueOfEveryLayer) {
  LoraCase c("padded");
  // 2 layers x {query, value} x {A, B} + qa_outputs {weight, bias}.
  ASSERT_EQ(c.adapter.trainable.size(), 2u * 2 * 2 + 2);
  EXPECT_EQ(c.adapter.trainable[0].key, "qa_outputs.weight");  // HF registers the head first
  EXPECT_EQ(c.adapter.trainable[2].key, "roberta.encoder.layer.0.attention.self.query.lora_A.weight");
  EXPECT_TRUE(c.model.layers[1].value.lora.defined());
  EXPECT_FALSE(c.model.layers[1].key.lora.defined());
  EXPECT_EQ(c.model.layers[0].query.lora.scaling, 2.0);  // lora_alpha 8 / r 4
}

TEST(XlmrLora, ForwardAndLossMatchPeft) {
  for (const std::string batch : {"padded", "full"}) {
    LoraCase c(batch);
    const QaLogits l = qa_forward(c.model, c.inputs, {});
    expect_close("lora " + batch + " start_logits", l.start, c.dump.tensor(batch + ".start_logits"), 1e-5);
    expect_close("lora " + batch + " end_logits", l.end, c.dump.tensor(batch + ".end_logits"), 1e-5);
    expect_close("lora " + batch + " loss", c.loss(l).reshape({1}), c.dump.tensor(batch + ".loss"), 1e-6);
  }
}

// Gradients are sums over B*T positions of products of O(1) activations; float32 summation order
// differs from PyTorch's autograd kernels, so we allow 1e-5 relative to the largest entry of each
// gradient (plus 1e-7 absolute for tiny ones).
TEST(XlmrLora, GradientsMatchPeft) {
  for (const std::string batch : {"padded", "full"}) {
    LoraCase c(batch);
    c.loss(qa_forward(c.model, c.inputs, {})).backward();
    for (const peft::AdapterTensor& t : c.adapter.trainable) {
      const std::string key = kPeftPrefix + t.key;
      const at::Tensor* tensor = t.tensor;
      const at::Tensor expected = c.dump.tensor(batch + ".grad." + key);
      ASSERT_TRUE(tensor->grad().defined()) << key;
      const double scale = expected.abs().max().item<double>();
      EXPECT_GT(scale, 0.0) << key;
      expect_close("lora " + batch + " grad " + key.substr(kPeftPrefix.size()), tensor->grad(), expected,
                   1e-5 * scale + 1e-7);
    }
  }
}

TEST(XlmrLora, ZeroBIsBaseExactly) {
  LoraCase c("padded");
  EncoderModel base = load_encoder(model_dir("tiny-xlmr-qa"), {EncoderHead::kQuestionAnswering});
  base.qa_outputs = c.model.qa_outputs;  // the adapter's saved head, so only the LoRA term differs
  for (auto& [module, linear] : c.model.named_linears()) {
    if (linear->lora.defined()) linear->lora.B = at::zeros_like(linear->lora.B);
  }
  const QaLogits with = qa_forward(c.model, c.inputs, {});
  const QaLogits without = qa_forward(base, c.inputs, {});
  EXPECT_TRUE(at::equal(with.start, without.start));
  EXPECT_TRUE(at::equal(with.end, without.end));
}

TEST(XlmrLora, DisabledAdapterIsBaseExactly) {
  LoraCase c("padded");
  EncoderModel base = load_encoder(model_dir("tiny-xlmr-qa"), {EncoderHead::kQuestionAnswering});
  base.qa_outputs = c.model.qa_outputs;
  for (auto& [module, linear] : c.model.named_linears()) linear->lora.enabled = false;
  EXPECT_TRUE(at::equal(qa_forward(c.model, c.inputs, {}).start, qa_forward(base, c.inputs, {}).start));
}

// Merging moves B A * scaling into W: the same math in another summation order (1e-5 as for HF).
TEST(XlmrLora, MergedEqualsUnmerged) {
  LoraCase c("padded");
  const QaLogits unmerged = qa_forward(c.model, c.inputs, {});
  for (auto& [module, linear] : c.model.named_linears()) nn::merge_adapter(*linear);
  const QaLogits merged = qa_forward(c.model, c.inputs, {});
  expect_close("lora merged start_logits", merged.start, unmerged.start, 1e-5);
  expect_close("lora merged end_logits", merged.end, unmerged.end, 1e-5);
  expect_close("lora merged vs peft start_logits", merged.start, c.dump.tensor("padded.start_logits"), 1e-5);
}

TEST(XlmrLora, Bf16BaseWithFloatAdapterRuns) {
  LoraCase c("padded");
  c.model.to(at::kBFloat16);  // base weights only; adapters stay float32 as PEFT keeps them
  EXPECT_EQ(c.model.layers[0].query.lora.A.scalar_type(), at::kFloat);
  const QaLogits l = qa_forward(c.model, c.inputs, {});
  EXPECT_EQ(l.start.scalar_type(), at::kBFloat16);
  // Same bf16 budget as XlmrParity.Bf16ForwardIsCloseToFp32.
  expect_close("lora bf16 start_logits", l.start, c.dump.tensor("padded.start_logits"), 0.1);
}

}  // namespace
}  // namespace qlora::models
