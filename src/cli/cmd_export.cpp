// qlora export: merge a PEFT adapter into its base and write a Hugging Face checkpoint folder.
#include "command.h"
#include "qlora/tasks/export.h"

namespace qlora::cli {

void add_export_command(CLI::App& app, Registry& registry, const GlobalOptions& /*global*/) {
  auto opts = std::make_shared<tasks::ExportOptions>();
  auto* sub = app.add_subcommand("export",
                                 "Merge a LoRA adapter into its base model and save a HF checkpoint (dense, "
                                 "or bitsandbytes with --quantize)");
  sub->add_option("--model", opts->model_dir, "Base model folder (config.json + safetensors)")
      ->required()
      ->check(CLI::ExistingDirectory);
  sub->add_option("--adapter", opts->adapter_dir, "PEFT adapter folder to merge (omit to re-save the base)")
      ->check(CLI::ExistingDirectory);
  sub->add_option("--out", opts->out_dir, "Output folder (written atomically)")->required();
  sub->add_option("--dtype", opts->dtype, "fp32, bf16 or fp16 (default: the base checkpoint's dtype)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  sub->add_option("--max-shard-size", opts->max_shard_bytes, "Bytes per safetensors shard (default 5e9)");
  sub->add_flag("--overwrite", opts->overwrite, "Replace an existing output folder");
  sub->add_option("--quantize", opts->quantize,
                  "Write a bitsandbytes checkpoint: nf4 or fp4 (load_in_4bit) or int8 (load_in_8bit); "
                  "default dense (a quantized base is dequantized)")
      ->check(CLI::IsMember({"nf4", "fp4", "int8"}));
  sub->add_flag("!--no-double-quant", opts->double_quant,
                "4-bit: no double quantization of the absmax (bnb_4bit_use_double_quant false)");
  sub->add_option("--blocksize", opts->blocksize,
                  "4-bit: quantization block size (64; transformers loads only 64)")
      ->check(CLI::IsMember({32, 64, 128, 256, 512, 1024, 2048, 4096}));
  sub->add_option("--compute-dtype", opts->compute_dtype, "4-bit: bnb_4bit_compute_dtype (default: --dtype)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  sub->footer(
      example_footer("  qlora export --model models/Llama-2-7b-hf --adapter runs/llama2_vi/best --out "
                     "models/llama2-vi-merged\n"
                     "  python -c \"from transformers import AutoModelForCausalLM as M; "
                     "M.from_pretrained('models/llama2-vi-merged')\"\n"
                     "  qlora export --model models/Llama-2-7b-hf --out models/llama2-7b-nf4 --quantize nf4 "
                     "--dtype fp16\n"));
  registry.add(sub, [opts] { return tasks::export_merged(*opts); });
}

}  // namespace qlora::cli
