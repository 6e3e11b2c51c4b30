#include "qlora/models/causal_lm.h"

#include <ATen/ATen.h>

#include "decoder_families.h"
#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/ops/bnb_serialization.h"

namespace qlora::models {

void KvCache::select_rows(const at::Tensor& rows) {
  for (auto& k : keys) k = k.index_select(0, rows);
  for (auto& v : values) v = v.index_select(0, rows);
}

std::string config_json_text(const HfConfig& config, const std::string& dir) {
  const std::string file = fsys::join(dir, "config.json");
  return fsys::exists(file) ? read_file(file) : config.json().dump(2);
}

void cast_parameters(const std::vector<std::pair<std::string, at::Tensor*>>& params, at::ScalarType dtype) {
  at::NoGradGuard no_grad;
  for (const auto& [name, tensor] : params) {
    if (!tensor->defined()) continue;
    const bool requires_grad = tensor->requires_grad();
    *tensor = tensor->to(dtype).set_requires_grad(requires_grad);
  }
}

std::unique_ptr<CausalLM> load_causal_lm(const std::string& dir, const CausalLmLoadOptions& options) {
  HfConfig config = HfConfig::load(dir);
  const std::string type = config.model_type();
  std::unique_ptr<CausalLM> model;
  if (type == "llama" || type == "mistral" || type == "qwen2") {
    model = load_llama_family(config, dir, options);
  } else if (type == "mpt") {
    model = load_mpt(config, dir, options);
  } else {
    fail(config.source() + ": model_type '" + type +
         "' is not a supported decoder (supported: llama, mistral, qwen2, mpt)");
  }
  // A pre-quantized int8 checkpoint runs LLM.int8 with the outlier threshold its config.json names.
  if (config.has("quantization_config")) {
    const ops::BnbQuantConfig bnb = ops::parse_bnb_config(config.json().at("quantization_config"),
                                                          config.source() + ": quantization_config");
    for (auto& [name, linear] : model->named_linears())
      if (linear->base.q8) linear->base.int8_threshold = bnb.llm_int8_threshold;
  }
  return model;
}

}  // namespace qlora::models
