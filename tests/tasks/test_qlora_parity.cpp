// QLoRA parity with transformers 5.17 + PEFT 0.21.2 + bitsandbytes 0.50.2 (CPU) on the tiny XLM-R QA
// model (fixtures: tools/gen_qlora_fixtures.py): which modules are quantized, the NF4 + double-quant
// bytes, 4-bit logits, LoRA gradients through the frozen 4-bit base, and a 20-step AdamW loss curve;
// and the same on a decoder, the pre-quantized tiny LLaMA (tools/gen_decoder_qlora_fixtures.py).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>

#include "parity.h"
#include "qlora/core/jsonl.h"
#include "qlora/io/safetensors.h"
#include "qlora/models/causal_lm.h"
#include "qlora/models/encoder.h"
#include "qlora/models/quantize.h"
#include "qlora/peft/lora_model.h"
#include "qlora/tasks/sft_task.h"
#include "qlora/train/optimizer.h"

namespace qlora {
namespace {

const std::string kBase = std::string(QLORA_FIXTURES_DIR) + "/models/tiny-xlmr-qa";
const std::string kQlora = std::string(QLORA_FIXTURES_DIR) + "/models/tiny-xlmr-qa-qlora";

using testing::expect_close;  // relative to the magnitude compared: tests/parity.h

// Compares every trainable tensor's gradient with the dump's "grad.<PEFT key>" (PEFT names the adapter
// "default": ...lora_A.default.weight) within 2e-5; returns how many were compared.
int expect_lora_grads(const std::vector<peft::AdapterTensor>& trainable, const SafetensorsFile& dump) {
  int checked = 0;
  for (const auto& t : trainable) {
    std::string key = t.key;
    key.insert(key.rfind(".weight"), ".default");
    if (!t.tensor->grad().defined()) {
      ADD_FAILURE() << "no gradient for " << key;
      continue;
    }
    expect_close("grad " + key, t.tensor->grad(), dump.tensor("grad." + key), 2e-5);
    ++checked;
  }
  return checked;
}

// Runs 20 (expected.size(0)) AdamW steps (lr 1e-2, torch defaults, no weight decay) on the trainable
// adapter tensors, the loss from `loss_fn` before each step; returns max |loss - expected| over the steps.
template <typename LossFn>
double loss_curve_max_diff(const std::vector<peft::AdapterTensor>& trainable, const at::Tensor& expected,
                           const LossFn& loss_fn) {
  train::ParamGroup group;
  for (const auto& t : trainable) {
    group.names.push_back(t.key);
    group.params.push_back(*t.tensor);
  }
  train::AdamWOptions o;
  o.lr = 1e-2;
  train::AdamW opt({group}, o);
  double worst = 0;
  for (int64_t step = 0; step < expected.size(0); ++step) {
    opt.zero_grad();
    const at::Tensor loss = loss_fn();
    worst = std::max(worst, std::abs(loss.item<double>() - expected[step].item<double>()));
    loss.backward();
    opt.step(1e-2);
  }
  return worst;
}

struct QloraModel {
  std::unique_ptr<models::EncoderModel> model;
  peft::PeftModelView view;
  models::QuantizeReport report;
};

QloraModel load_4bit() {
  QloraModel m;
  models::EncoderLoadOptions options;
  options.head = models::EncoderHead::kQuestionAnswering;
  m.model = std::make_unique<models::EncoderModel>(models::load_encoder(kBase, options));
  m.view = peft::peft_view(*m.model);
  models::QuantizeOptions q;
  q.load_in_4bit = true;
  q.quant_type = ops::QuantType::kNf4;
  q.blocksize = 64;
  q.double_quant = true;
  q.compute_dtype = at::kFloat;
  q.output_module = m.view.output_embeddings;
  m.report = models::quantize_linears(m.view.linears, q);
  return m;
}

TEST(QloraParity, QuantizesTheModulesTransformersQuantizes) {
  const auto m = load_4bit();
  std::ifstream in(kQlora + "/qlora_meta.json");
  const Json meta = Json::parse(in);
  EXPECT_EQ(m.report.quantized, meta["quantized"].get<std::vector<std::string>>());
}

TEST(QloraParity, PackedWeightsAndAbsmaxEqualBitsandbytes) {
  const auto m = load_4bit();
  const auto dump = SafetensorsFile::open(kQlora + "/qlora_outputs.safetensors");
  for (const auto& [name, linear] : m.view.linears) {
    ASSERT_TRUE(linear->base.q4) << name;
    // Byte-for-byte: bnb's CPU quantizer and ours agree on these weights (no all-zero block, no LUT tie).
    EXPECT_TRUE(at::equal(linear->base.q4->packed.reshape(-1), dump.tensor("bnb." + name + ".packed")))
        << name;
    EXPECT_TRUE(at::equal(linear->base.q4->absmax, dump.tensor("bnb." + name + ".absmax"))) << name;
  }
}

models::QaLogits forward(const QloraModel& m, const SafetensorsFile& dump) {
  return models::qa_forward(*m.model, {dump.tensor("input_ids"), dump.tensor("attention_mask"), {}}, {});
}

TEST(QloraParity, FourBitLogitsAndLoraGradientsMatch) {
  auto m = load_4bit();
  const auto dump = SafetensorsFile::open(kQlora + "/qlora_outputs.safetensors");
  {
    at::NoGradGuard no_grad;
    const auto base = forward(m, dump);
    // Same dequantized weights, same fp32 ops; only summation order differs (~1e-7 relative).
    expect_close("4-bit base start logits", base.start, dump.tensor("base.start_logits"), 2e-5);
    expect_close("4-bit base end logits", base.end, dump.tensor("base.end_logits"), 2e-5);
  }
  const auto adapter = peft::load_adapter(m.view, kQlora, {/*is_trainable=*/true});
  const auto out = forward(m, dump);
  expect_close("QLoRA start logits", out.start, dump.tensor("lora.start_logits"), 2e-5);
  expect_close("QLoRA end logits", out.end, dump.tensor("lora.end_logits"), 2e-5);
  const at::Tensor loss =
      models::qa_loss(out.start, out.end, dump.tensor("start_positions"), dump.tensor("end_positions"));
  expect_close("loss", loss.reshape(dump.tensor("lora.loss").sizes()), dump.tensor("lora.loss"), 1e-5);
  loss.backward();
  const int checked = expect_lora_grads(adapter.trainable, dump);
  // layers x (query, value, and the three "dense": attention.output, intermediate, output) x (A, B)
  EXPECT_EQ(checked, 2 * 5 * 2);
}

TEST(QloraParity, TwentyStepLossCurveMatches) {
  auto m = load_4bit();
  const auto dump = SafetensorsFile::open(kQlora + "/qlora_outputs.safetensors");
  const auto adapter = peft::load_adapter(m.view, kQlora, {/*is_trainable=*/true});
  const double worst = loss_curve_max_diff(adapter.trainable, dump.tensor("curve.losses"), [&] {
    const auto out = forward(m, dump);
    return models::qa_loss(out.start, out.end, dump.tensor("start_positions"), dump.tensor("end_positions"));
  });
  // Measured 0 (same fp32 ops in the same order); 1e-4 leaves room for BLAS summation-order changes,
  // which compound over 20 steps of a loss falling from 3.1 to 0.014.
  EXPECT_LT(worst, 1e-4) << "max |loss - transformers loss| over 20 steps";
  std::printf("QLoRA 20-step loss curve: max |diff| = %.3g\n", worst);
}

const std::string kDecoder = std::string(QLORA_FIXTURES_DIR) + "/models/llama_llama3-bnb-nf4";

TEST(QloraParity, DecoderLogitsGradientsAndLossCurveMatch) {
  auto model = models::load_causal_lm(kDecoder);
  auto view = peft::peft_view(*model);
  const auto dump = SafetensorsFile::open(kDecoder + "/qlora/qlora_outputs.safetensors");
  const auto adapter = peft::load_adapter(view, kDecoder + "/qlora", {/*is_trainable=*/true});
  auto forward = [&] {
    models::CausalLmInputs in;
    in.input_ids = dump.tensor("input_ids");
    in.attention_mask = dump.tensor("attention_mask");
    const at::Tensor logits = model->forward(in, nullptr, {}).logits;
    const auto [sum, count] = tasks::causal_lm_loss_sum(logits, dump.tensor("labels"));
    return std::make_pair(logits, sum / static_cast<double>(count));  // HF's mean over label tokens
  };
  const auto [logits, loss] = forward();
  // Same dequantized weights and fp32 ops; only summation order differs. Padded positions are compared out:
  // their logits are unused, and ours need not equal what HF's attention mask makes of them.
  const at::Tensor real = dump.tensor("attention_mask").unsqueeze(-1).to(at::kBool);
  expect_close("decoder QLoRA logits", logits.masked_fill(~real, 0),
               dump.tensor("lora.logits").masked_fill(~real, 0), 2e-5);
  expect_close("loss", loss.reshape(dump.tensor("lora.loss").sizes()), dump.tensor("lora.loss"), 1e-5);
  loss.backward();
  const int checked = expect_lora_grads(adapter.trainable, dump);
  EXPECT_EQ(checked, 2 * 7 * 2);  // layers x (q, k, v, o, gate, up, down) x (A, B)

  const double worst =
      loss_curve_max_diff(adapter.trainable, dump.tensor("curve.losses"), [&] { return forward().second; });
  // As for XLM-R above: 1e-4 leaves room for BLAS summation order compounding over 20 steps (5.0 -> 0.92).
  EXPECT_LT(worst, 1e-4) << "max |loss - transformers loss| over 20 steps";
  std::printf("decoder QLoRA 20-step loss curve: max |diff| = %.3g\n", worst);
}

}  // namespace
}  // namespace qlora
