// What every training task shares around the engine: the run config turned into TrainerOptions, the
// resolved config saved beside the run, metrics.jsonl + TensorBoard events, and the summary JSON.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>

#include "qlora/config/run_config.h"
#include "qlora/core/jsonl.h"
#include "qlora/models/quantize.h"
#include "qlora/ops/device.h"
#include "qlora/peft/lora_model.h"
#include "qlora/train/trainer.h"

namespace qlora::tasks {

// The engine's options from the run config's train section.
train::TrainerOptions trainer_options(const config::RunConfig& config);

// Runs `task` with the run config, writing run_config.json, metrics.jsonl and TensorBoard events in
// train.output_dir. `describe` adds the task's own figures under "model" in the result.
Json run_task_training(train::TrainTask& task, const config::RunConfig& config,
                       const std::string& resume_from, const std::function<Json()>& describe);

// Tokenizer and config files a saved full model needs beside its weights to load on its own.
void copy_model_side_files(const std::string& from_dir, const std::string& to_dir);

// config.json text with the weights' dtype where transformers 5 reads it ("dtype") and where older
// readers do ("torch_dtype"): a copied config that says float16 over float32 weights would make
// transformers load them as float16. `source` names the file in errors.
Json config_with_dtype(const std::string& config_text, at::ScalarType dtype, const std::string& source);
// "float32" / "bfloat16" / "float16": torch's names, as config.json spells them.
std::string torch_dtype_name(at::ScalarType dtype);

// A fully fine-tuned model as a Hugging Face folder: `parameters` in their dtype, the side files of
// model.path (and model.tokenizer), and config.json's dtype set to the weights' floating dtype.
void save_full_model(const std::string& dir,
                     const std::vector<std::pair<std::string, at::Tensor*>>& parameters,
                     const config::RunConfig& config);

// The run config's quantization section applied to a loaded model (quantize-on-load): 4-bit or int8
// bases for every linear except the output embeddings, quantization.skip_modules and the
// adapter.modules_to_save (trained in full, so kept dense; transformers would quantize a QA head and PEFT
// then fails to train it). Logs what was done; a no-op when neither load_in_4bit nor load_in_8bit.
// What transformers' bitsandbytes quantizer leaves dense in `view`: the output embeddings and the family's
// keep_dense modules, added to `options` (output_module, skip_modules).
void skip_dense_modules(models::QuantizeOptions& options, const peft::PeftModelView& view);

models::QuantizeReport apply_quantization(const config::RunConfig& config, peft::PeftModelView& view);

// The run's device from train.device (auto, cpu, cuda, cuda:N), described (name, capability, memory).
// Errors when CUDA is asked for and there is none.
ops::DeviceInfo training_device(const config::RunConfig& config);

// model.dtype resolved for the run's device ("auto": fp32 on the CPU, bf16 on sm80+, fp16 below; bf16
// below sm80 is an error suggesting fp16), as a "fp32" / "bf16" / "fp16" name.
std::string training_dtype(const config::RunConfig& config, const ops::DeviceInfo& device);

// "fp32" / "bf16" / "fp16" -> dtype; Error otherwise.
at::ScalarType parse_dtype_name(const std::string& dtype);

}  // namespace qlora::tasks
