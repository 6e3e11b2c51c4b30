#include "qlora/models/causal_lm.h"

#include <ATen/ATen.h>

#include "decoder_families.h"
#include "qlora/core/error.h"

namespace qlora::models {

void KvCache::select_rows(const at::Tensor& rows) {
  for (auto& k : keys) k = k.index_select(0, rows);
  for (auto& v : values) v = v.index_select(0, rows);
}

std::unique_ptr<CausalLM> load_causal_lm(const std::string& dir, const CausalLmLoadOptions& options) {
  HfConfig config = HfConfig::load(dir);
  const std::string type = config.model_type();
  if (type == "llama" || type == "mistral" || type == "qwen2") return load_llama_family(config, dir, options);
  if (type == "mpt") return load_mpt(config, dir, options);
  fail(config.source() + ": model_type '" + type +
       "' is not a supported decoder (supported: llama, mistral, qwen2, mpt)");
}

}  // namespace qlora::models
