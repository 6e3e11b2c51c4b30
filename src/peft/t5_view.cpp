// The T5 family as PEFT sees it: HF module paths straight from the model's one table of names.
// PEFT 0.21.2's default LoRA targets for t5 and mt5 are "q" and "v"
// (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING).
#include "qlora/models/t5.h"
#include "qlora/peft/lora_model.h"

namespace qlora::peft {

PeftModelView peft_view(models::T5Model& model) {
  PeftModelView view;
  view.linears = model.named_linears();
  view.parameters = model.named_parameters();
  view.output_embeddings = "lm_head";  // excluded from "all-linear", as PEFT excludes output embeddings
  view.model_type = model.config.model_type;
  view.keep_dense = {"wo"};  // T5PreTrainedModel._keep_in_fp32_modules: bitsandbytes leaves them dense
  const bool mt5 = model.config.model_type == "mt5";
  view.base_model_class = mt5 ? "MT5ForConditionalGeneration" : "T5ForConditionalGeneration";
  view.parent_library = mt5 ? "transformers.models.mt5.modeling_mt5" : "transformers.models.t5.modeling_t5";
  return view;
}

}  // namespace qlora::peft
