#include "qlora/models/causal_lm.h"

#include <ATen/ATen.h>

#include "decoder_families.h"
#include "qlora/core/error.h"
#include "qlora/ops/bnb_serialization.h"

namespace qlora::models {

void KvCache::select_rows(const at::Tensor& rows) {
  for (auto& k : keys) k = k.index_select(0, rows);
  for (auto& v : values) v = v.index_select(0, rows);
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
