// Quantize-on-load, as transformers' bitsandbytes quantizer does it: every linear projection becomes a
// 4-bit (Linear4bit) or int8 (Linear8bitLt) base except the output head and the configured skip list
// (llm_int8_skip_modules); embeddings and norms stay dense.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "qlora/nn/lora_linear.h"

namespace qlora {
class Checkpoint;
}

namespace qlora::models {

struct QuantizeOptions {
  bool load_in_4bit = false;
  bool load_in_8bit = false;
  ops::QuantType quant_type = ops::QuantType::kNf4;
  int64_t blocksize = 64;
  bool double_quant = true;
  at::ScalarType compute_dtype = at::kFloat;
  double int8_threshold = 6.0;
  // Kept dense: exact module paths or "."-suffixes ("lm_head", "qa_outputs"), plus `output_module`.
  std::vector<std::string> skip_modules;
  std::string output_module;  // the model's output embeddings / task head (transformers keeps it dense)
};

struct QuantizeReport {
  std::vector<std::string> quantized;  // module paths, model order
  std::vector<std::string> skipped;
  int64_t quantized_params = 0;
  int64_t quantized_bytes = 0;  // packed weights + statistics
};

// Bytes of a quantized base's packed weight and statistics (0 for a dense one).
int64_t quantized_state_bytes(const nn::LinearBase& base);

// Quantizes `linears` in place (dense weights freed). No-op unless load_in_4bit or load_in_8bit.
QuantizeReport quantize_linears(const std::vector<std::pair<std::string, nn::Linear*>>& linears,
                                const QuantizeOptions& options);

// Pre-quantized checkpoints (transformers' bitsandbytes layout, ../shared/REFERENCE.md A2): when `ckpt`
// stores `module`.weight as a bnb 4-bit weight (weight.absmax, weight.quant_map, [weight.nested_*],
// weight.quant_state.bitsandbytes__nf4|fp4) or an int8 one (weight int8 + SCB + weight_format), builds
// base.q4 / base.q8 from it (shape checked against `shape` = [out, in]), leaves base.weight undefined, sets
// base.compute_dtype (`compute_dtype`, or the dtype recorded in the quant state / float32 for int8), adds the
// keys it read to `used` and returns true. Returns false for a dense weight. The caller reads the bias.
bool read_prequantized(const Checkpoint& ckpt, const std::string& module, const std::vector<int64_t>& shape,
                       std::optional<at::ScalarType> compute_dtype, nn::LinearBase& base,
                       std::set<std::string>* used = nullptr);

}  // namespace qlora::models
