// Moving a model to a device reaches every tensor, keeps tied weights tied and trainable tensors leaves.
// Checked on the "meta" device (shapes only, no data), which behaves as a second device does: a tensor
// left on the CPU fails here as it would on CUDA, on a machine without a GPU. (A whole forward cannot run
// on meta: embedding's index_select has no meta kernel; the forward's device hygiene needs a GPU test.)
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "models/encoder_test_util.h"
#include "qlora/models/causal_lm.h"
#include "qlora/models/quantize.h"
#include "qlora/models/t5.h"
#include "qlora/peft/lora_model.h"

namespace qlora::peft {
namespace {

const c10::Device kMeta(c10::kMeta);

void expect_all_on(const PeftModelView& view, c10::Device device, const std::string& what) {
  int64_t checked = 0;
  auto check = [&](const at::Tensor& t, const std::string& name) {
    if (!t.defined()) return;
    ++checked;
    EXPECT_EQ(t.device(), device) << what << ": " << name;
  };
  for (const auto& [name, t] : view.parameters) check(*t, name);
  for (const auto& [name, l] : view.linears) {
    check(l->base.weight, name + ".weight");
    check(l->lora.A, name + ".lora_A");
    check(l->lora.B, name + ".lora_B");
    if (l->base.q4) {
      check(l->base.q4->packed, name + ".packed");
      check(l->base.q4->absmax, name + ".absmax");
      check(l->base.q4->nested_absmax, name + ".nested_absmax");
      check(l->base.q4->code, name + ".code");
    }
  }
  EXPECT_GT(checked, 10) << what;
}

LoraConfig lora_on(std::vector<std::string> targets) {
  LoraConfig c;
  c.r = 2;
  c.lora_alpha = 4;
  c.target_modules = NameSpec::list(std::move(targets));
  c.task_type = "CAUSAL_LM";
  return c;
}

TEST(DeviceMove, DecoderWithAdapterMovesWholeAndStaysTied) {
  for (const char* name : {"qwen2_tied", "llama_llama3", "mpt_phogpt", "mpt_variant"}) {
    auto model = models::load_causal_lm(models::testing::model_dir(name));
    PeftModelView view = peft_view(*model);
    const bool mpt = std::string(name).rfind("mpt", 0) == 0;
    const LoraSummary s = attach_lora(
        view, lora_on(mpt ? std::vector<std::string>{"Wqkv"} : std::vector<std::string>{"q_proj"}), 1);
    move_to_device(view, kMeta);
    expect_all_on(view, kMeta, name);
    for (const auto& t : s.trainable) {
      EXPECT_TRUE(t.tensor->requires_grad()) << name << " " << t.key;
      EXPECT_TRUE(t.tensor->is_leaf()) << name << " " << t.key;
    }
    if (std::string(name) == "qwen2_tied") {
      EXPECT_TRUE(view.linear("lm_head")->base.weight.is_same(*view.parameters.front().second))
          << "untied by the move";
    }
  }
}

TEST(DeviceMove, FourBitBaseMovesItsQuantState) {
  auto model = models::load_causal_lm(models::testing::model_dir("llama_llama3"));
  PeftModelView view = peft_view(*model);
  models::QuantizeOptions q;
  q.load_in_4bit = true;
  q.output_module = view.output_embeddings;
  models::quantize_linears(view.linears, q);
  attach_lora(view, lora_on({"q_proj", "v_proj"}), 1);
  move_to_device(view, kMeta);
  expect_all_on(view, kMeta, "llama 4-bit");
}

}  // namespace
}  // namespace qlora::peft
