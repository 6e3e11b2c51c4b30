// bitsandbytes' HF safetensors layout for quantized Linear weights (../shared/REFERENCE.md A2) and the
// config.json `quantization_config` block (transformers' BitsAndBytesConfig).
//
// Lives in src/ops rather than src/quant because it builds at::Tensor (qlora_quant links no torch).
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"
#include "qlora/ops/int8.h"
#include "qlora/ops/quantize.h"

namespace qlora::ops {

using BnbTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Linear4bit._save_to_state_dict for the weight of `prefix` (e.g. "model.layers.0.mlp.down_proj."), in
// bnb's order: weight, weight.absmax, weight.quant_map, [weight.nested_absmax, weight.nested_quant_map],
// weight.quant_state.bitsandbytes__<type> (UTF-8 bytes of json.dumps of the non-tensor fields). CPU tensors.
BnbTensors quant_state_to_tensors(const QuantState4bit& state, const std::string& prefix);

// QuantState.from_dict: reads the keys above from `lookup(name)` (an undefined tensor when absent);
// errors name `source` and the key.
template <typename Lookup>
QuantState4bit quant_state_from_tensors(const Lookup& lookup, const std::string& prefix,
                                        const std::string& source);

// The JSON text bnb writes for the non-tensor fields (Python json.dumps spacing and float repr).
std::string quant_state_json(const QuantState4bit& state);

// Parses that JSON into `state` (quant_type, blocksize, dtype, shape, nested_*); errors name `where`.
void apply_quant_state_json(const std::string& json_text, QuantState4bit& state, const std::string& where);

// Int8: Linear8bitLt's state dict keys: weight (int8 CB), SCB, weight_format (uint8 scalar 0 = "row").
BnbTensors int8_to_tensors(const Int8Weight& w, const std::string& prefix);
// Linear8bitLt's keys back into an Int8Weight: `weight` int8 [out, in], `SCB` float32 [out] and, when
// present, weight_format 0 ("row", the only layout bnb saves). Errors name `source` and the key.
Int8Weight int8_from_tensors(const at::Tensor& weight, const at::Tensor& scb, const at::Tensor& weight_format,
                             const std::string& prefix, const std::string& source);

// BitsAndBytesConfig fields that matter here, with transformers' defaults (a bare load_in_4bit is FP4
// without double quantization and a float32 compute dtype).
struct BnbQuantConfig {
  bool load_in_4bit = false;
  bool load_in_8bit = false;
  std::string bnb_4bit_quant_type = "fp4";
  bool bnb_4bit_use_double_quant = false;
  std::string bnb_4bit_compute_dtype = "float32";
  std::string bnb_4bit_quant_storage = "uint8";
  double llm_int8_threshold = 6.0;
  bool llm_int8_has_fp16_weight = false;
  bool llm_int8_enable_fp32_cpu_offload = false;
  std::optional<std::vector<std::string>> llm_int8_skip_modules;
};

// Reads a config.json `quantization_config` object; quant_method must be "bitsandbytes". Errors name `where`.
BnbQuantConfig parse_bnb_config(const Json& j, const std::string& where);
// The block transformers writes (BitsAndBytesConfig.to_dict(), keys sorted as nlohmann does).
Json bnb_config_to_json(const BnbQuantConfig& c);

// ---- implementation of the template ----
QuantState4bit quant_state_from_parts(const at::Tensor& packed, const at::Tensor& absmax,
                                      const at::Tensor& quant_map, const at::Tensor& nested_absmax,
                                      const at::Tensor& nested_quant_map, const at::Tensor& json_bytes,
                                      const std::string& json_key, const std::string& source);

template <typename Lookup>
QuantState4bit quant_state_from_tensors(const Lookup& lookup, const std::string& prefix,
                                        const std::string& source) {
  const std::string w = prefix + "weight";
  at::Tensor json = lookup(w + ".quant_state.bitsandbytes__nf4");
  std::string key = w + ".quant_state.bitsandbytes__nf4";
  const at::Tensor fp4 = lookup(w + ".quant_state.bitsandbytes__fp4");
  if (fp4.defined()) {
    if (json.defined()) fail(source + ": both nf4 and fp4 quant_state keys for '" + w + "'");
    json = fp4;
    key = w + ".quant_state.bitsandbytes__fp4";
  }
  return quant_state_from_parts(lookup(w), lookup(w + ".absmax"), lookup(w + ".quant_map"),
                                lookup(w + ".nested_absmax"), lookup(w + ".nested_quant_map"), json, key,
                                source);
}

}  // namespace qlora::ops
