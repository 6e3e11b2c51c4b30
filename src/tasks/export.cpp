#include "qlora/tasks/export.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <memory>

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/core/log.h"
#include "qlora/io/checkpoint.h"
#include "qlora/io/hf_config.h"
#include "qlora/models/causal_lm.h"
#include "qlora/models/encoder.h"
#include "qlora/peft/lora_model.h"

namespace qlora::tasks {

namespace {

// Files a merged folder needs besides the weights: config, generation defaults, every tokenizer file.
const char* const kSideFiles[] = {"config.json",
                                  "generation_config.json",
                                  "tokenizer.json",
                                  "tokenizer_config.json",
                                  "special_tokens_map.json",
                                  "tokenizer.model",
                                  "spiece.model",
                                  "sentencepiece.bpe.model",
                                  "vocab.json",
                                  "merges.txt",
                                  "added_tokens.json",
                                  "chat_template.jinja"};

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "fp32") return at::kFloat;
  if (name == "bf16") return at::kBFloat16;
  if (name == "fp16") return at::kHalf;
  fail("--dtype '" + name + "': expected fp32, bf16 or fp16");
}

std::string torch_dtype_name(at::ScalarType t) {
  return t == at::kFloat ? "float32" : t == at::kBFloat16 ? "bfloat16" : "float16";
}

// The dtype the base checkpoint stores its floating tensors in (the first one found).
at::ScalarType stored_dtype(const Checkpoint& ckpt) {
  for (const auto& name : ckpt.names()) {
    const at::ScalarType t = ckpt.tensor(name).scalar_type();
    if (at::isFloatingType(t)) return t;
  }
  return at::kFloat;
}

// A loaded base model of any family, seen by PEFT.
struct LoadedModel {
  std::unique_ptr<models::CausalLM> decoder;
  std::unique_ptr<models::EncoderModel> encoder;
  peft::PeftModelView view;
};

LoadedModel load_for_export(const std::string& dir) {
  const HfConfig config = HfConfig::load(dir);
  const std::string type = config.model_type();
  LoadedModel m;
  if (type == "llama" || type == "mistral" || type == "qwen2" || type == "mpt") {
    m.decoder = models::load_causal_lm(dir);
    m.view = peft::peft_view(*m.decoder);
  } else if (type == "xlm-roberta" || type == "roberta" || type == "bert") {
    models::EncoderLoadOptions options;
    options.head = models::EncoderHead::kQuestionAnswering;
    m.encoder = std::make_unique<models::EncoderModel>(models::load_encoder(dir, options));
    m.view = peft::peft_view(*m.encoder);
  } else {
    fail(config.source() + ": model_type '" + type + "' cannot be exported yet");
  }
  return m;
}

}  // namespace

Json export_merged(const ExportOptions& o) {
  if (o.model_dir.empty()) fail("export: --model is required");
  if (o.out_dir.empty()) fail("export: --out is required");
  if (fsys::exists(o.out_dir) && !o.overwrite)
    fail(o.out_dir + ": already exists (pass --overwrite to replace it)");
  const Checkpoint base_ckpt = open_checkpoint(o.model_dir);
  const at::ScalarType dtype = o.dtype.empty() ? stored_dtype(base_ckpt) : parse_dtype(o.dtype);

  LoadedModel model = load_for_export(o.model_dir);
  Json result = {{"out", o.out_dir}, {"dtype", torch_dtype_name(dtype)}};
  if (!o.adapter_dir.empty()) {
    const peft::LoraSummary adapter = peft::load_adapter(model.view, o.adapter_dir);
    peft::merge_and_unload(model.view);
    result["merged_modules"] = adapter.adapted.size();
    result["modules_to_save"] = adapter.modules_to_save.size();
    log::info("merged " + std::to_string(adapter.adapted.size()) + " LoRA modules from " + o.adapter_dir);
  }

  // Tensors in the base checkpoint's names; only the ones the base stored (a tied head stays tied).
  NamedTensors tensors;
  for (const auto& [name, tensor] : model.view.parameters) {
    if (!base_ckpt.contains(name) || !tensor->defined()) continue;
    at::Tensor t = tensor->detach();
    if (at::isFloatingType(t.scalar_type())) t = t.to(dtype);
    tensors.emplace_back(name, t.contiguous());
  }
  for (const auto& name : base_ckpt.names()) {
    bool found = false;
    for (const auto& [n, t] : tensors) found = found || n == name;
    if (!found)
      log::warn(base_ckpt.path() + ": tensor '" + name + "' is not part of the model; not exported");
  }

  // Build beside the target, then one rename: a kill leaves either nothing or the whole folder.
  const std::string tmp = o.out_dir + ".tmp-" + std::to_string(::getpid());
  fsys::remove_all(tmp);
  fsys::create_directories(tmp);
  SaveCheckpointOptions save;
  save.max_shard_bytes = o.max_shard_bytes;
  const auto files = save_checkpoint(tmp, tensors, save);
  for (const char* name : kSideFiles) {
    const std::string src = fsys::join(o.model_dir, name);
    if (!fsys::exists(src)) continue;
    std::string text = read_file(src);
    if (std::string(name) == "config.json") {
      Json config = Json::parse(text);
      config["torch_dtype"] = torch_dtype_name(dtype);
      config.erase("quantization_config");  // the merged weights are dense
      text = config.dump(2) + "\n";
    }
    write_file_atomic(fsys::join(tmp, name), text);
  }
  if (fsys::exists(o.out_dir)) fsys::remove_all(o.out_dir);
  fsys::rename_path(tmp, o.out_dir);
  int64_t bytes = 0;
  for (const auto& [n, t] : tensors) bytes += t.numel() * t.element_size();
  result["tensors"] = tensors.size();
  result["bytes"] = bytes;
  result["files"] = files.size();
  return result;
}

}  // namespace qlora::tasks
