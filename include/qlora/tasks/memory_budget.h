// `qlora train --dry-run`'s memory budget: what a run will hold on the training device, computed from
// config.json and the run config before any weight is loaded. Parameter counts are exact (from
// models::model_shape and PEFT's target matching); activations are an estimate of the tensors autograd
// keeps per block (eager attention), documented term by term in the .cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qlora/config/run_config.h"
#include "qlora/core/jsonl.h"
#include "qlora/models/model_shape.h"

namespace qlora::tasks {

struct MemoryComponent {
  std::string name;  // "base_weights", "quant_stats", "adapter_weights", "gradients", ...
  int64_t bytes = 0;
  std::string note;  // how it was counted
};

struct MemoryBudget {
  std::vector<MemoryComponent> components;
  int64_t total_params = 0;      // base model parameters
  int64_t trainable_params = 0;  // LoRA (+ modules_to_save) or every parameter
  int64_t quantized_params = 0;  // parameters stored in 4 or 8 bits
  double bits_per_quantized_param = 0;
  int64_t total_bytes() const;
  Json to_json() const;          // {"components": {name: bytes...}, "total_bytes": ..., ...}
  std::string to_table() const;  // human-readable, one line per component, GiB
};

// Budget of `config` on the model shape `shape` (usually models::model_shape(HfConfig of model.path)).
MemoryBudget memory_budget(const config::RunConfig& config, const models::ModelShape& shape);

// Bits per parameter of blockwise 4-bit quantization (bitsandbytes layout): 4 + 32/blocksize without
// double quantization; 4 + 8/blocksize + 32/(blocksize*256) with it (ignoring the one fp32 offset).
double bits_per_param_4bit(int64_t blocksize, bool double_quant);

}  // namespace qlora::tasks
