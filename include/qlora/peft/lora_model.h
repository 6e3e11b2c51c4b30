// LoRA adapters on a model, as PEFT's LoraModel / PeftModel handles them: attach (get_peft_model),
// save (save_pretrained), load (PeftModel.from_pretrained) and merge_and_unload. Models are seen
// through PeftModelView, their modules named by HF module path, so that matching and adapter keys are
// PEFT's by construction. The adapter itself lives in each nn::Linear (THE LoRA seam).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "qlora/peft/lora_config.h"

namespace qlora::nn {
struct Linear;
}
namespace qlora::models {
struct EncoderModel;
struct T5Model;
class CausalLM;
}  // namespace qlora::models

namespace qlora::peft {

// A model as PEFT sees it. Pointers stay valid while the model lives and is not moved.
struct PeftModelView {
  std::vector<std::pair<std::string, nn::Linear*>> linears;     // HF module path -> projection, model order
  std::vector<std::pair<std::string, at::Tensor*>> parameters;  // HF parameter name -> base tensor, every one
                                                                // (linears' weights and biases included)
  std::string output_embeddings;  // module get_output_embeddings() returns (lm_head); empty when none
  std::string base_model_class;   // "XLMRobertaForQuestionAnswering": auto_mapping when task_type is null
  std::string parent_library;     // "transformers.models.xlm_roberta.modeling_xlm_roberta"
  std::string model_type;         // config.json's model_type: picks PEFT's default target_modules
  // Linears transformers never quantizes for this family (its _keep_in_fp32_modules: T5's "wo"), as module
  // paths or "."-suffixes.
  std::vector<std::string> keep_dense;

  // Every module path holding a parameter (all dot-prefixes of parameter names), parents first.
  std::vector<std::string> module_names() const;
  nn::Linear* linear(const std::string& module) const;  // nullptr when not a linear of the view
};

// The view of an encoder model (its canonical names mapped through hf_module_name).
PeftModelView peft_view(models::EncoderModel& model);
// The view of a T5 / mT5 model as T5ForConditionalGeneration / MT5ForConditionalGeneration.
PeftModelView peft_view(models::T5Model& model);
// The view of a decoder (src/peft/causal_lm_view.cpp): HF names as the model lists them, lm_head as output
// embeddings, base_model_class = hf_class_name().
PeftModelView peft_view(models::CausalLM& model);

// A trainable (or adapter-file) tensor by the key PEFT saves it under, without kPeftKeyPrefix:
// "roberta.encoder.layer.0.attention.self.query.lora_A.weight", "qa_outputs.weight".
struct AdapterTensor {
  std::string key;
  at::Tensor* tensor;
};

// What attach_lora / load_adapter did.
struct LoraSummary {
  LoraConfig config;                 // as PEFT would save it ("all-linear" expanded, task heads added)
  std::vector<std::string> adapted;  // HF module paths given a LoRA adapter, model order
  std::vector<std::string> modules_to_save;  // HF module paths trained in full
  std::vector<AdapterTensor> trainable;      // tensors with requires_grad, PEFT key order of the model
  int64_t trainable_params = 0;              // PeftModel.get_nb_trainable_parameters()[0]
  int64_t all_params = 0;  // [1]: base + LoRA + a second copy of each modules_to_save module
  double trainable_percent() const { return all_params ? 100.0 * trainable_params / all_params : 0.0; }
  // print_trainable_parameters()'s line: "trainable params: 1,090 || all params: 52,452 ||
  // trainable%: 2.0781"
  std::string trainable_line() const;
};

// get_peft_model: freezes every base parameter, then gives each module PEFT targets (check_target_module
// over the view's linears, "all-linear" expanded first) A [R, in] and B [out, R] in float32 with R, alpha
// from rank_pattern / alpha_pattern: init "true" A ~ kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(in),
// 1/sqrt(in)), B = 0; "gaussian" A ~ N(0, 1/R), B = 0; "false" both nn.Linear's default init. A and B
// require grad; so do the modules_to_save parameters (trained in place: the view holds no frozen copy)
// and, with bias "all", every base parameter whose name contains "bias", with "lora_only" the biases of
// adapted layers. Randomness comes from a CPU generator seeded with `seed`, modules in model order.
// Throws Error when nothing matches, when the config is unsupported, or when a task head that PEFT adds to
// modules_to_save after injection (QUESTION_ANS: qa_outputs) was itself targeted (PEFT 0.21.2 then fails
// with "modules_to_save cannot be applied to modules of type lora.Linear").
// A null target_modules is PEFT's default for view.model_type (peft_default_target_modules); the
// summary's config holds the resolved list, which save_adapter writes, as PEFT saves the resolved set.
LoraSummary attach_lora(PeftModelView& view, const LoraConfig& config, uint64_t seed);

// PeftModel.save_pretrained into folder `dir`: adapter_config.json (inference_mode true; auto_mapping
// from the view when task_type is null; base_model_name_or_path as the config has it) and
// adapter_model.safetensors ({"format": "pt"}) holding, under kPeftKeyPrefix, <m>.lora_A.weight /
// <m>.lora_B.weight of every adapted module, the modules_to_save parameters as <m>.<param>, and with bias
// "all" every parameter whose name contains "bias" (<m>.base_layer.bias for adapted modules), with
// "lora_only" <m>.base_layer.bias of adapted modules. Not written: the two redundant keys PEFT adds with
// bias "all" + modules_to_save (<m>.original_module.bias, the frozen original, and <m>.modules_to_save.bias,
// a copy of <m>.bias); PEFT loads with strict=False and needs neither. The folder is built beside `dir`
// and swapped in with one rename, so a kill leaves the old adapter or the new one; other files of an
// existing `dir` are moved over. Returns the path of the weights file.
std::string save_adapter(const std::string& dir, const PeftModelView& view, const LoraSummary& adapter);

struct LoadAdapterOptions {
  bool is_trainable = false;  // PeftModel.from_pretrained(is_trainable=True): continue training
};

// Keys of the adapter file that were not used: reported rather than rejected, as PEFT warns.
struct LoadAdapterReport {
  std::vector<std::string> unexpected;  // full keys with no slot in the model (warned)
  std::vector<std::string> ignored;  // PEFT's redundant copies (<m>.original_module.*, <m>.modules_to_save.*)
};

// PeftModel.from_pretrained: reads `dir`/adapter_config.json, attaches adapters to the modules it targets
// (as attach_lora) and fills them from `dir`/adapter_model.safetensors (A, B as float32; saved base
// tensors in the model's dtype). Errors name the file and key: a missing LoRA / modules_to_save / bias
// tensor the config implies, a shape mismatch (both shapes), an unsupported or malformed config, a
// missing file. Unused keys are warned and listed in `report`. With is_trainable false nothing requires
// grad (inference); with true the tensors attach_lora would train do.
LoraSummary load_adapter(PeftModelView& view, const std::string& dir, const LoadAdapterOptions& options = {},
                         LoadAdapterReport* report = nullptr);

// merge_and_unload: B A * scaling is added into every adapted base weight (nn::merge_adapter) and the
// adapters are dropped; modules_to_save already hold their trained values. Everything stays frozen.
void merge_and_unload(PeftModelView& view);

// Moves every tensor the view reaches to `device`: parameters, quantized states (4-bit and int8) and
// LoRA A/B. Tied slots stay one tensor; trainable tensors stay leaves that require grad. Call it after
// quantizing and attaching the adapter, before an optimizer takes the tensors.
void move_to_device(PeftModelView& view, c10::Device device);

}  // namespace qlora::peft
