// Internal to src/peft: what a LoraConfig means for one model, shared by attach_lora and load_adapter.
#pragma once

#include <string>
#include <vector>

#include "qlora/peft/lora_model.h"

namespace qlora::peft::detail {

// Matches `config` against the view as LoraModel.inject_adapter + the task PeftModel class do. With
// `extend_task_heads` (get_peft_model) the task heads are appended to summary.config.modules_to_save as
// PEFT appends them (duplicates included); a loaded config already holds them. Fills config, adapted and
// modules_to_save of the result. `source` names the config in errors.
LoraSummary plan_lora(const PeftModelView& view, const LoraConfig& config, bool extend_task_heads,
                      const std::string& source);

// Every tensor the adapter file holds for this summary (keys without kPeftKeyPrefix), in model order.
// The adapters must be attached.
std::vector<AdapterTensor> adapter_tensors(const PeftModelView& view, const LoraSummary& summary);

// Freezes the base, then sets requires_grad on adapter_tensors() when `trainable`; fills trainable,
// trainable_params and all_params as PEFT counts them.
void set_trainable(PeftModelView& view, LoraSummary& summary, bool trainable);

}  // namespace qlora::peft::detail
