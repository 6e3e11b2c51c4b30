// Private to src/models: one loader per decoder family, chosen by load_causal_lm from config.json
// "model_type". Each lives in its architecture's file (llama.cpp, mpt.cpp).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qlora/io/hf_config.h"
#include "qlora/models/causal_lm.h"

namespace qlora::models {

// "llama", "mistral", "qwen2".
std::unique_ptr<CausalLM> load_llama_family(const HfConfig& config, const std::string& dir,
                                            const CausalLmLoadOptions& options);
// "mpt" (PhoGPT).
std::unique_ptr<CausalLM> load_mpt(const HfConfig& config, const std::string& dir,
                                   const CausalLmLoadOptions& options);

// The text of dir/config.json (merged exports carry it byte for byte), or `config` dumped when there is none.
std::string config_json_text(const HfConfig& config, const std::string& dir);

// CausalLM::to for a family's parameter list: casts every defined tensor (a quantized base has none) and
// keeps requires_grad.
void cast_parameters(const std::vector<std::pair<std::string, at::Tensor*>>& params, at::ScalarType dtype);

}  // namespace qlora::models
