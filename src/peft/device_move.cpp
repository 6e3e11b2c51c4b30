// Moving a loaded model (base, quantized states, adapters) to a device, every tensor once.
#include <ATen/ATen.h>

#include <unordered_map>

#include "qlora/nn/lora_linear.h"
#include "qlora/ops/int8.h"
#include "qlora/ops/quantize.h"
#include "qlora/peft/lora_model.h"

namespace qlora::peft {

void move_to_device(PeftModelView& view, c10::Device device) {
  // Tied weights (lm_head = embed_tokens, T5's shared) are one tensor reached through several slots:
  // each storage moves once and every slot gets the same moved tensor, so they stay tied.
  std::unordered_map<const c10::TensorImpl*, at::Tensor> moved;
  auto relocate = [&](at::Tensor& t) {
    if (!t.defined() || t.device() == device) return;
    const c10::TensorImpl* key = t.unsafeGetTensorImpl();
    auto it = moved.find(key);
    if (it == moved.end()) {
      const bool trainable = t.requires_grad();
      // detach: a leaf stays a leaf on the device (to() of a leaf that requires grad is not one).
      at::Tensor copy = t.detach().to(device);
      if (trainable) copy.set_requires_grad(true);
      it = moved.emplace(key, copy).first;
    }
    t = it->second;
  };
  for (auto& [name, tensor] : view.parameters) relocate(*tensor);
  for (auto& [name, linear] : view.linears) {
    nn::LinearBase& b = linear->base;
    relocate(b.weight);
    relocate(b.bias);
    if (b.q4) {
      for (at::Tensor* t : {&b.q4->packed, &b.q4->absmax, &b.q4->nested_absmax, &b.q4->nested_code,
                            &b.q4->offset, &b.q4->code})
        relocate(*t);
    }
    if (b.q8) {
      relocate(b.q8->cb);
      relocate(b.q8->scb);
    }
    relocate(linear->lora.A);
    relocate(linear->lora.B);
  }
}

}  // namespace qlora::peft
