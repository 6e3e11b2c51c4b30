// `qlora export`: base model + PEFT adapter -> one merged Hugging Face checkpoint folder (safetensors,
// config.json, generation_config.json, tokenizer files) that transformers loads without PEFT.
#pragma once

#include <string>

#include "qlora/core/jsonl.h"

namespace qlora::tasks {

struct ExportOptions {
  std::string model_dir;    // base checkpoint folder
  std::string adapter_dir;  // PEFT adapter folder; empty = re-save the base (e.g. to reshard / cast)
  std::string out_dir;      // created; must not exist unless `overwrite`
  std::string dtype;        // fp32, bf16, fp16; empty = the dtype the base was stored in
  uint64_t max_shard_bytes = 5'000'000'000;  // save_pretrained's default "5GB"
  bool overwrite = false;
};

// Loads the base (decoder LLM, T5 or encoder, by config.json model_type), applies the adapter,
// merges it (merge_and_unload) and writes the folder beside out_dir then renames it into place, so a
// kill leaves no half-written checkpoint. Returns {"out", "tensors", "bytes", "merged_modules", ...}.
Json export_merged(const ExportOptions& options);

}  // namespace qlora::tasks
