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
  // "" writes dense weights (a quantized base is dequantized: the 16-bit merge, PEFT's default); "nf4",
  // "fp4" or "int8" writes every linear but the output head in bitsandbytes' layout with config.json's
  // quantization_config, as transformers' save_pretrained of a load_in_4bit / load_in_8bit model does.
  std::string quantize;
  bool double_quant = true;   // 4-bit: bnb_4bit_use_double_quant
  int64_t blocksize = 64;     // 4-bit: blocksize (transformers always uses 64; others load only in qlora)
  std::string compute_dtype;  // 4-bit: bnb_4bit_compute_dtype (fp32, bf16, fp16); empty = --dtype
};

// Loads the base (decoder LLM, T5 or encoder, by config.json model_type; dense or pre-quantized), applies
// the adapter, merges it (merge_and_unload), optionally quantizes, and writes the folder beside out_dir then
// renames it into place, so a kill leaves no half-written checkpoint. Requantizing merged weights warns: the
// merged delta is partly lost to 4-bit rounding. Returns {"out", "tensors", "bytes", "merged_modules", ...}.
Json export_merged(const ExportOptions& options);

}  // namespace qlora::tasks
