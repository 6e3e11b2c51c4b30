// The encoder family as PEFT sees it: HF module paths from the model's one table of names.
#include <algorithm>

#include "qlora/core/error.h"
#include "qlora/models/encoder.h"
#include "qlora/peft/lora_model.h"

namespace qlora::peft {
namespace {

// transformers' class-name stem of a model_type.
std::string class_stem(const std::string& model_type) {
  if (model_type == "xlm-roberta") return "XLMRoberta";
  if (model_type == "roberta") return "Roberta";
  if (model_type == "bert") return "Bert";
  fail("peft_view: no transformers class known for model_type '" + model_type + "'");
}

std::string head_suffix(models::EncoderHead head) {
  switch (head) {
    case models::EncoderHead::kNone:
      return "Model";
    case models::EncoderHead::kQuestionAnswering:
      return "ForQuestionAnswering";
    case models::EncoderHead::kSequenceClassification:
      return "ForSequenceClassification";
  }
  return "Model";
}

}  // namespace

PeftModelView peft_view(models::EncoderModel& model) {
  PeftModelView view;
  for (auto& [module, linear] : model.named_linears()) {
    view.linears.emplace_back(model.hf_module_name(module), linear);
  }
  for (auto& [name, tensor] : model.named_parameters()) {
    const size_t dot = name.rfind('.');
    view.parameters.emplace_back(model.hf_module_name(name.substr(0, dot)) + name.substr(dot), tensor);
  }
  // Encoders have no output embeddings in their QA / classification / bare forms (the MLM head is not
  // modelled), so all-linear excludes nothing but a SEQ_CLS classifier.
  view.model_type = model.config.model_type;
  view.base_model_class = class_stem(model.config.model_type) + head_suffix(model.head);
  std::string library = model.config.model_type;
  std::replace(library.begin(), library.end(), '-', '_');
  view.parent_library = "transformers.models." + library + ".modeling_" + library;
  return view;
}

}  // namespace qlora::peft
