#include "qlora/nn/lora_linear.h"

#include <ATen/ATen.h>

#include "qlora/core/error.h"

namespace qlora::nn {

at::Tensor dropout(const at::Tensor& x, double p, const ForwardContext& ctx) {
  if (!ctx.training || p <= 0.0) return x;
  if (p >= 1.0) return x * 0;
  const auto keep = at::empty_like(x).bernoulli_(1.0 - p, ctx.generator);
  return x * keep / (1.0 - p);
}

at::Tensor lora_linear(const at::Tensor& x, const Linear& layer, const ForwardContext& ctx) {
  at::Tensor y = at::linear(x, layer.base.weight, layer.base.bias);
  const LoraAdapter& a = layer.lora;
  if (!a.defined() || !a.enabled || a.merged) return y;
  // PEFT casts the adapter input to lora_A's dtype and adds the scaled low-rank term.
  const at::Tensor h = dropout(x.to(a.A.scalar_type()), a.dropout, ctx);
  const at::Tensor low = at::linear(at::linear(h, a.A), a.B);  // [..., R] -> [..., out]
  return y + (low * a.scaling).to(y.scalar_type());
}

at::Tensor lora_delta_weight(const LoraAdapter& adapter, at::ScalarType dtype) {
  if (!adapter.defined()) fail("lora_delta_weight: adapter is empty");
  const at::Tensor delta = at::matmul(adapter.B.to(at::kFloat), adapter.A.to(at::kFloat)) * adapter.scaling;
  return delta.to(dtype);
}

void merge_adapter(Linear& layer) {
  if (!layer.lora.defined() || layer.lora.merged) return;
  at::NoGradGuard no_grad;
  layer.base.weight.add_(lora_delta_weight(layer.lora, layer.base.weight.scalar_type()));
  layer.lora.merged = true;
}

void unmerge_adapter(Linear& layer) {
  if (!layer.lora.defined() || !layer.lora.merged) return;
  at::NoGradGuard no_grad;
  layer.base.weight.sub_(lora_delta_weight(layer.lora, layer.base.weight.scalar_type()));
  layer.lora.merged = false;
}

}  // namespace qlora::nn
