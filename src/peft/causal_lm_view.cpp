// Decoders as PEFT sees them: a CausalLM already names its modules by HF path (model.layers.0...,
// lm_head), which is what PEFT keys are built from under base_model.model.
#include "qlora/models/causal_lm.h"
#include "qlora/peft/lora_model.h"

namespace qlora::peft {

PeftModelView peft_view(models::CausalLM& model) {
  PeftModelView view;
  view.linears = model.named_linears();
  view.parameters = model.named_parameters();
  // get_output_embeddings() of *ForCausalLM: "all-linear" never targets it.
  view.output_embeddings = "lm_head";
  view.base_model_class = model.hf_class_name();
  const std::string type = model.model_type();
  view.model_type = type;
  view.parent_library = "transformers.models." + type + ".modeling_" + type;
  return view;
}

}  // namespace qlora::peft
