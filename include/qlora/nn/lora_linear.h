// THE LoRA seam: every projection of every model goes through lora_linear(). Base weights
// (dense today; NF4 and int8 join with the QLoRA issue), the low-rank adapter with PEFT
// semantics, dropout, merging and disabling all live here; model files never open-code a LoRA add.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "qlora/ops/int8.h"
#include "qlora/ops/quantize.h"

namespace qlora::nn {

// Base weights of a projection, as nn.Linear stores them: dense, or bitsandbytes 4-bit / int8 (then
// `weight` is undefined and the quantized state holds it; the base never trains).
struct LinearBase {
  at::Tensor weight;                          // [out, in]; undefined when quantized
  at::Tensor bias;                            // [out], or undefined when the layer has no bias
  std::shared_ptr<ops::QuantState4bit> q4;    // Linear4bit (QLoRA)
  std::shared_ptr<ops::Int8Weight> q8;        // Linear8bitLt
  at::ScalarType compute_dtype = at::kFloat;  // quantized: dtype of the dequantized matmul
  double int8_threshold = 0.0;                // quantized int8: LLM.int8 outlier threshold (inference)
  bool quantized() const { return q4 || q8; }
  int64_t in_features() const { return q4 ? q4->shape[1] : q8 ? q8->cb.size(1) : weight.size(1); }
  int64_t out_features() const { return q4 ? q4->shape[0] : q8 ? q8->cb.size(0) : weight.size(0); }
  at::Device device() const { return q4 ? q4->packed.device() : q8 ? q8->cb.device() : weight.device(); }
  // The dense weight [out, in] in `dtype` (dequantized when quantized).
  at::Tensor dense_weight(at::ScalarType dtype) const;
};

// Replaces a dense base by its 4-bit (bnb Linear4bit, quantize-on-load) or int8 (Int8Params) form and
// frees the dense weight.
void quantize_base_4bit(LinearBase& base, ops::QuantType type, int64_t blocksize, bool double_quant,
                        at::ScalarType compute_dtype);
void quantize_base_int8(LinearBase& base, at::ScalarType compute_dtype, double threshold);
// The reverse: a quantized base becomes its dequantized dense weight in `dtype` (default its compute dtype,
// so that a merged delta adds exactly); a dense base is left alone.
void densify(LinearBase& base, std::optional<at::ScalarType> dtype = std::nullopt);

// A LoRA adapter on one projection (PEFT LoraLayer): out += B(A(dropout(x))) * scaling.
struct LoraAdapter {
  at::Tensor A;          // [R, in]  = PEFT lora_A.weight
  at::Tensor B;          // [out, R] = PEFT lora_B.weight
  double scaling = 1.0;  // lora_alpha / r, or lora_alpha / sqrt(r) with rslora
  double dropout = 0.0;  // lora_dropout probability, applied to the adapter input in training
  bool enabled = true;   // false: the layer behaves as its base (PEFT disable_adapter)
  bool merged = false;   // true: B A * scaling has been added into the base weight
  bool defined() const { return A.defined(); }
  int64_t rank() const { return A.size(0); }
};

struct Linear {
  LinearBase base;
  LoraAdapter lora;  // empty (undefined A) when the projection is not adapted
};

// What a forward pass needs beyond its inputs.
struct ForwardContext {
  bool training = false;                   // enables dropout
  std::optional<at::Generator> generator;  // dropout randomness; default generator when empty
  bool gradient_checkpointing = false;     // models recompute each block in backward (nn/checkpoint.h)
};

// y = x W^T + b  (+ B(A(dropout(x))) * scaling when the adapter is defined, enabled, not merged).
// x: [..., in] -> [..., out].
at::Tensor lora_linear(const at::Tensor& x, const Linear& layer, const ForwardContext& ctx);

// B A * scaling as a [out, in] tensor in the base weight's dtype (computed in float32, as PEFT
// does on CPU for half types).
at::Tensor lora_delta_weight(const LoraAdapter& adapter, at::ScalarType dtype);

// Adds / subtracts the delta into the base weight (no autograd) and flips `merged`. A quantized base is
// dequantized first and stays dense in its compute dtype afterwards (PEFT's default for 4-bit merges:
// requantizing loses quality); requantize with quantize_base_4bit when memory matters more.
void merge_adapter(Linear& layer);
void unmerge_adapter(Linear& layer);

// Dropout with an optional generator (at::dropout has none): x * mask / (1 - p).
at::Tensor dropout(const at::Tensor& x, double p, const ForwardContext& ctx);

}  // namespace qlora::nn
