#include "qlora/tasks/export.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <memory>
#include <set>

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/core/log.h"
#include "qlora/io/checkpoint.h"
#include "qlora/io/hf_config.h"
#include "qlora/models/causal_lm.h"
#include "qlora/models/encoder.h"
#include "qlora/models/quantize.h"
#include "qlora/models/t5.h"
#include "qlora/ops/bnb_serialization.h"
#include "qlora/peft/lora_model.h"
#include "qlora/tasks/task_runner.h"

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

// The dtype the base checkpoint stores its floating parameters in (the first one found; bnb's float32
// statistics such as weight.quant_map are not parameters).
at::ScalarType stored_dtype(const Checkpoint& ckpt) {
  auto ends_with = [](const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  for (const auto& name : ckpt.names()) {
    if (!ends_with(name, ".weight") && !ends_with(name, ".bias")) continue;
    const at::ScalarType t = ckpt.tensor(name).scalar_type();
    if (at::isFloatingType(t)) return t;
  }
  return at::kFloat;
}

// A loaded base model of any family, seen by PEFT.
struct LoadedModel {
  std::unique_ptr<models::CausalLM> decoder;
  std::unique_ptr<models::EncoderModel> encoder;
  std::unique_ptr<models::T5Model> t5;
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
  } else if (type == "t5" || type == "mt5") {
    m.t5 = std::make_unique<models::T5Model>(models::load_t5(dir));
    m.view = peft::peft_view(*m.t5);
  } else {
    fail(config.source() + ": model_type '" + type + "' cannot be exported yet");
  }
  return m;
}

// The linear owning parameter `name` ("<module>.weight") when it is quantized, else nullptr.
const nn::Linear* quantized_owner(const peft::PeftModelView& view, const std::string& name) {
  const std::string suffix = ".weight";
  if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return nullptr;
  const nn::Linear* l = view.linear(name.substr(0, name.size() - suffix.size()));
  return l != nullptr && l->base.quantized() ? l : nullptr;
}

// bnb's extra keys of a quantized weight ("x.weight.absmax", "x.SCB", ...), which the model holds inside
// its quantized state rather than as parameters.
bool is_bnb_state_key(const peft::PeftModelView& view, const std::string& name) {
  for (const std::string& tail : {std::string(".SCB"), std::string(".weight_format")}) {
    if (name.size() > tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0)
      return view.linear(name.substr(0, name.size() - tail.size())) != nullptr;
  }
  const size_t at = name.find(".weight.");
  return at != std::string::npos && view.linear(name.substr(0, at)) != nullptr;
}

// Dequantizes every quantized linear whose state differs from what `q` asks for (all of them when `q`
// quantizes nothing), so that the folder is uniformly dense or uniformly in the requested layout.
void densify_unless(peft::PeftModelView& view, const models::QuantizeOptions& q, at::ScalarType dtype) {
  for (auto& [module, linear] : view.linears) {
    nn::LinearBase& b = linear->base;
    if (!b.quantized()) continue;
    const bool keep = (b.q4 && q.load_in_4bit && b.q4->quant_type == q.quant_type &&
                       b.q4->blocksize == q.blocksize && b.q4->nested() == q.double_quant) ||
                      (b.q8 && q.load_in_8bit);
    if (!keep) nn::densify(b, dtype);
  }
}

}  // namespace

Json export_merged(const ExportOptions& o) {
  if (o.model_dir.empty()) fail("export: --model is required");
  if (o.out_dir.empty()) fail("export: --out is required");
  if (fsys::exists(o.out_dir) && !o.overwrite)
    fail(o.out_dir + ": already exists (pass --overwrite to replace it)");
  const Checkpoint base_ckpt = open_checkpoint(o.model_dir);
  const at::ScalarType dtype = o.dtype.empty() ? stored_dtype(base_ckpt) : parse_dtype(o.dtype);

  models::QuantizeOptions quant;
  if (!o.quantize.empty()) {
    if (o.quantize == "int8") {
      quant.load_in_8bit = true;
    } else {
      quant.load_in_4bit = true;
      quant.quant_type = ops::parse_quant_type(o.quantize, "--quantize");
      quant.blocksize = o.blocksize;
      quant.double_quant = o.double_quant;
      quant.compute_dtype = o.compute_dtype.empty() ? dtype : parse_dtype(o.compute_dtype);
    }
  }

  LoadedModel model = load_for_export(o.model_dir);
  Json result = {{"out", o.out_dir}, {"dtype", torch_dtype_name(dtype)}};
  if (!o.adapter_dir.empty()) {
    const peft::LoraSummary adapter = peft::load_adapter(model.view, o.adapter_dir);
    peft::merge_and_unload(model.view);
    result["merged_modules"] = adapter.adapted.size();
    result["modules_to_save"] = adapter.modules_to_save.size();
    log::info("merged " + std::to_string(adapter.adapted.size()) + " LoRA modules from " + o.adapter_dir);
  }

  densify_unless(model.view, quant, dtype);
  if (quant.load_in_4bit || quant.load_in_8bit) {
    // Quantize in the export dtype, as transformers quantizes the dtype it loaded.
    for (auto& [module, linear] : model.view.linears) {
      if (linear->base.weight.defined() && !linear->base.quantized())
        linear->base.weight = linear->base.weight.to(dtype);
    }
    skip_dense_modules(quant, model.view);
    std::set<const nn::Linear*> already;
    for (auto& [module, linear] : model.view.linears)
      if (linear->base.quantized()) already.insert(linear);
    const models::QuantizeReport report = models::quantize_linears(model.view.linears, quant);
    // bnb records the dtype the weight had when quantized (what dequantize returns), not the compute dtype.
    for (auto& [module, linear] : model.view.linears)
      if (linear->base.q4 && !already.count(linear)) linear->base.q4->dtype = dtype;
    result["quantized_modules"] = report.quantized.size();
    result["quantize"] = o.quantize;
    if (!o.adapter_dir.empty()) {
      log::warn("--quantize " + o.quantize +
                ": requantizing merged weights rounds the merged LoRA delta to the quantization grid and "
                "loses part of what was trained; prefer the 16-bit merge (no --quantize) for quality");
    }
  }

  // Tensors in the base checkpoint's names; only the ones the base stored (a tied head stays tied).
  // A quantized linear's weight becomes bnb's keys (weight, weight.absmax, ... / weight, SCB, weight_format).
  NamedTensors tensors;
  std::set<std::string> written;
  for (const auto& [name, tensor] : model.view.parameters) {
    if (!base_ckpt.contains(name)) continue;
    if (const nn::Linear* l = quantized_owner(model.view, name)) {
      const std::string prefix = name.substr(0, name.size() - std::string("weight").size());
      ops::BnbTensors bnb = l->base.q4 ? ops::quant_state_to_tensors(*l->base.q4, prefix)
                                       : ops::int8_to_tensors(*l->base.q8, prefix);
      for (auto& [n, t] : bnb) {
        written.insert(n);
        tensors.emplace_back(n, t);
      }
      continue;
    }
    if (!tensor->defined()) continue;
    at::Tensor t = tensor->detach();
    if (at::isFloatingType(t.scalar_type())) t = t.to(dtype);
    written.insert(name);
    tensors.emplace_back(name, t.contiguous());
  }
  for (const auto& name : base_ckpt.names()) {
    if (!written.count(name) && !is_bnb_state_key(model.view, name))
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
      Json config = config_with_dtype(text, dtype, src);
      config.erase("quantization_config");  // dense unless quantized below
      if (quant.load_in_4bit || quant.load_in_8bit) {
        ops::BnbQuantConfig bnb;
        bnb.load_in_4bit = quant.load_in_4bit;
        bnb.load_in_8bit = quant.load_in_8bit;
        if (quant.load_in_4bit) {
          bnb.bnb_4bit_quant_type = o.quantize;
          bnb.bnb_4bit_use_double_quant = quant.double_quant;
          bnb.bnb_4bit_compute_dtype = torch_dtype_name(quant.compute_dtype);
        }
        config["quantization_config"] = ops::bnb_config_to_json(bnb);
      }
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
