#include "qlora/nn/lora_linear.h"

#include <ATen/ATen.h>

#include "qlora/core/error.h"
#include "qlora/ops/lora_fusion.h"

namespace qlora::nn {

at::Tensor dropout(const at::Tensor& x, double p, const ForwardContext& ctx) {
  if (!ctx.training || p <= 0.0) return x;
  if (p >= 1.0) return x * 0;
  const auto keep = at::empty_like(x).bernoulli_(1.0 - p, ctx.generator);
  return x * keep / (1.0 - p);
}

at::Tensor LinearBase::dense_weight(at::ScalarType dtype) const {
  if (q4) return ops::dequantize_4bit(*q4, dtype);
  if (q8) return ops::dequantize_int8(*q8, dtype);
  return weight.to(dtype);
}

void quantize_base_4bit(LinearBase& base, ops::QuantType type, int64_t blocksize, bool double_quant,
                        at::ScalarType compute_dtype) {
  if (base.quantized()) return;
  at::NoGradGuard no_grad;
  base.q4 =
      std::make_shared<ops::QuantState4bit>(ops::quantize_4bit(base.weight, type, blocksize, double_quant));
  base.q4->dtype = compute_dtype;  // bnb's quant_state.dtype: what dequantize returns
  base.compute_dtype = compute_dtype;
  if (base.bias.defined()) base.bias = base.bias.to(compute_dtype);
  base.weight = at::Tensor();
}

void quantize_base_int8(LinearBase& base, at::ScalarType compute_dtype, double threshold) {
  if (base.quantized()) return;
  at::NoGradGuard no_grad;
  base.q8 = std::make_shared<ops::Int8Weight>(ops::quantize_int8(base.weight));
  base.compute_dtype = compute_dtype;
  base.int8_threshold = threshold;
  if (base.bias.defined()) base.bias = base.bias.to(compute_dtype);
  base.weight = at::Tensor();
}

namespace {

// The base projection: dense at::linear, or the bitsandbytes matmul of a quantized weight in the compute
// dtype, returned in x's dtype (Linear4bit / Linear8bitLt: out.to(inp_dtype)).
at::Tensor base_forward(const at::Tensor& x, const LinearBase& base, const ForwardContext& ctx) {
  if (base.q4) return ops::matmul_4bit(x.to(base.compute_dtype), *base.q4, base.bias).to(x.scalar_type());
  if (base.q8) {
    const at::Tensor xc = x.to(base.compute_dtype);
    // Training (and any autograd) uses the dequantize-then-matmul path bnb runs on CPU in training mode.
    if (ctx.training || base.int8_threshold <= 0.0 || x.requires_grad())
      return ops::matmul_int8(xc, *base.q8, base.bias).to(x.scalar_type());
    return ops::matmul_int8_lt(xc, *base.q8, base.bias, base.int8_threshold).to(x.scalar_type());
  }
  return at::linear(x, base.weight, base.bias);
}

bool kernel_dtype(at::ScalarType t) { return t == at::kFloat || t == at::kHalf || t == at::kBFloat16; }

// CUDA inference folds the low-rank term into y with one kernel (ops::lora_add_: float32 accumulation, one
// rounding) instead of the composite's full-size temporaries. Training, anything autograd must see and
// the CPU keep the composite below, whose bits the PEFT parity tests pin.
bool use_fused_lora_add(const at::Tensor& x, const at::Tensor& y, const LoraAdapter& a,
                        const ForwardContext& ctx) {
  if (!y.is_cuda() || ctx.training) return false;  // not training: dropout is off
  if (!kernel_dtype(y.scalar_type()) || !kernel_dtype(a.A.scalar_type()) ||
      a.A.scalar_type() != a.B.scalar_type() || a.B.device() != y.device()) {
    return false;
  }
  return !(at::GradMode::is_enabled() &&
           (x.requires_grad() || y.requires_grad() || a.A.requires_grad() || a.B.requires_grad()));
}

}  // namespace

at::Tensor lora_linear(const at::Tensor& x, const Linear& layer, const ForwardContext& ctx) {
  at::Tensor y = base_forward(x, layer.base, ctx);
  const LoraAdapter& a = layer.lora;
  if (!a.defined() || !a.enabled || a.merged) return y;
  if (use_fused_lora_add(x, y, a, ctx)) {
    const at::Tensor t = at::linear(x.to(a.A.scalar_type()), a.A);  // [..., R]
    if (!y.is_contiguous()) y = y.contiguous();
    at::Tensor y2 = y.view({-1, y.size(-1)});  // [M, out], writes land in y
    ops::lora_add_(y2, t.reshape({-1, a.rank()}), a.B, a.scaling);
    return y;
  }
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

void densify(LinearBase& base, std::optional<at::ScalarType> dtype) {
  if (!base.quantized()) return;
  base.weight = base.dense_weight(dtype.value_or(base.compute_dtype));
  base.q4.reset();
  base.q8.reset();
}

// On CUDA the fused kernels (ops/lora_fusion.h) apply the same roundings without the dense delta
// temporary; the CPU keeps the composite.
static bool fused_merge(const at::Tensor& weight, const LoraAdapter& a) {
  return weight.is_cuda() && kernel_dtype(weight.scalar_type()) && a.A.device() == weight.device();
}

void merge_adapter(Linear& layer) {
  if (!layer.lora.defined() || layer.lora.merged) return;
  at::NoGradGuard no_grad;
  LinearBase& base = layer.base;
  const LoraAdapter& a = layer.lora;
  if (base.q4 && base.q4->packed.is_cuda() && kernel_dtype(base.compute_dtype) &&
      a.A.device() == base.q4->packed.device()) {
    // Dequantize and add in one pass: the bits of densify() followed by add_.
    base.weight = ops::lora_merge_4bit(*base.q4, a.A, a.B, a.scaling, base.compute_dtype);
    base.q4.reset();
  } else {
    densify(base);
    if (fused_merge(base.weight, a)) {
      ops::lora_merge_(base.weight, a.A, a.B, a.scaling, /*subtract=*/false);
    } else {
      base.weight.add_(lora_delta_weight(a, base.weight.scalar_type()));
    }
  }
  layer.lora.merged = true;
}

void unmerge_adapter(Linear& layer) {
  if (!layer.lora.defined() || !layer.lora.merged) return;
  at::NoGradGuard no_grad;
  densify(layer.base);
  if (fused_merge(layer.base.weight, layer.lora)) {
    ops::lora_merge_(layer.base.weight, layer.lora.A, layer.lora.B, layer.lora.scaling, /*subtract=*/true);
  } else {
    layer.base.weight.sub_(lora_delta_weight(layer.lora, layer.base.weight.scalar_type()));
  }
  layer.lora.merged = false;
}

}  // namespace qlora::nn
