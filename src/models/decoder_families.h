// Private to src/models: one loader per decoder family, chosen by load_causal_lm from config.json
// "model_type". Each lives in its architecture's file (llama.cpp, mpt.cpp).
#pragma once

#include <memory>
#include <string>

#include "qlora/io/hf_config.h"
#include "qlora/models/causal_lm.h"

namespace qlora::models {

// "llama", "mistral", "qwen2".
std::unique_ptr<CausalLM> load_llama_family(const HfConfig& config, const std::string& dir,
                                            const CausalLmLoadOptions& options);
// "mpt" (PhoGPT).
std::unique_ptr<CausalLM> load_mpt(const HfConfig& config, const std::string& dir,
                                   const CausalLmLoadOptions& options);

}  // namespace qlora::models
