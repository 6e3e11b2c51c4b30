// PEFT's LoraConfig (peft 0.21.2, tuners/lora/config.py) and its adapter_config.json, read and written
// exactly as PEFT does: json.dumps(asdict(config), indent=2, sort_keys=True) with every field present.
// Fields qlora acts on are typed; PEFT's other fields are kept as JSON (`other_fields`) so that a file
// read and written again keeps them, and the ones qlora cannot honour are rejected by name.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qlora/core/jsonl.h"

namespace qlora::config {
struct AdapterSection;
}

namespace qlora::peft {

// The PEFT release whose format qlora writes (peft_version of the configs it creates).
inline constexpr const char* kPeftFormatVersion = "0.21.2";
inline constexpr const char* kAdapterConfigName = "adapter_config.json";
inline constexpr const char* kAdapterWeightsName = "adapter_model.safetensors";
// PEFT's key prefix: PeftModel.base_model (LoraModel) -> .model (the HF model).
inline constexpr const char* kPeftKeyPrefix = "base_model.model.";

enum class LoraBias { kNone, kAll, kLoraOnly };  // "none", "all", "lora_only"
const char* to_string(LoraBias bias);

// A PEFT field typed Optional[Union[list[str], str]]: null, a list of names, or one string (a regex for
// target_modules / exclude_modules, "all-linear", or one layer-container name for layers_pattern).
struct NameSpec {
  enum class Kind { kNull, kList, kString };
  Kind kind = Kind::kNull;
  std::vector<std::string> names;  // kList, in file order (PEFT saves sets in set order)
  std::string text;                // kString

  static NameSpec null() { return {}; }
  static NameSpec list(std::vector<std::string> names) { return {Kind::kList, std::move(names), {}}; }
  static NameSpec string(std::string text) { return {Kind::kString, {}, std::move(text)}; }
  bool is_null() const { return kind == Kind::kNull; }
  bool is_list() const { return kind == Kind::kList; }
  bool is_string() const { return kind == Kind::kString; }
  // The list, or the string as a one-element list (layers_pattern), or empty.
  std::vector<std::string> as_list() const;
  bool operator==(const NameSpec& o) const { return kind == o.kind && names == o.names && text == o.text; }
};

struct LoraConfig {
  int64_t r = 8;                // rank R of every adapted projection (rank_pattern overrides)
  double lora_alpha = 8;        // scaling = lora_alpha / r (/ sqrt(r) with use_rslora)
  double lora_dropout = 0.0;    // dropout probability on the adapter input while training
  NameSpec target_modules;      // list: suffix match; string: re.fullmatch; "all-linear" (any case)
  NameSpec exclude_modules;     // same matching rules; wins over target_modules
  bool fan_in_fan_out = false;  // GPT-2 Conv1D layout; false for nn.Linear (PEFT resets it with a warning)
  LoraBias bias = LoraBias::kNone;
  bool use_rslora = false;
  std::optional<std::vector<std::string>> modules_to_save;  // trained in full and saved (heads)
  std::string init_lora_weights = "true";  // "true", "false", "gaussian", or another PEFT init name
  std::optional<std::vector<int64_t>> layers_to_transform;    // layer indices, or null for all
  bool layers_to_transform_is_int = false;                    // written as one int, as it was read
  NameSpec layers_pattern;                                    // the layer container name, e.g. "layers"
  std::vector<std::pair<std::string, int64_t>> rank_pattern;  // pattern -> r, in file order
  std::vector<std::pair<std::string, double>> alpha_pattern;  // pattern -> lora_alpha, in file order
  std::optional<std::string> task_type;                       // "QUESTION_ANS", "SEQ_CLS", "CAUSAL_LM", ...
  std::optional<std::string> base_model_name_or_path;
  std::optional<std::string> revision;
  std::string peft_type = "LORA";
  std::optional<std::string> peft_version = std::string(kPeftFormatVersion);
  bool inference_mode = false;         // save_adapter writes true, as PeftModel.save_pretrained does
  Json auto_mapping;                   // null or {"base_model_class", "parent_library"} (task_type null only)
  Json other_fields = Json::object();  // PEFT's remaining LoraConfig fields with their values (see .cpp)
};

// adapter_config.json text for `config` exactly as PEFT 0.21.2's PeftConfig.save_pretrained writes it
// (no trailing newline; non-ASCII escaped as \uXXXX). Integral lora_alpha / alpha_pattern values are
// written as integers (PEFT keeps the Python type: 16.0 stays 16.0 there).
std::string lora_config_to_json(const LoraConfig& config);
// Parses adapter_config.json text; `source` names it in errors ("FILE: key 'r': expected an integer,
// got string"). Unknown keys (other PEFT versions) are dropped with a warning, as PEFT does.
LoraConfig lora_config_from_json(const std::string& text, const std::string& source);
LoraConfig read_lora_config(const std::string& path);
// PEFT 0.21.2's TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING: the target_modules get_peft_model /
// from_pretrained use when a config's target_modules is null (llama, mistral, qwen2: q_proj, v_proj; mpt:
// Wqkv; t5, mt5: q, v; xlm-roberta, roberta, bert: query, value; ...), in the table's order; nullopt for
// a model type the table lacks. Only null means "default": an empty list matches nothing, as in PEFT.
std::optional<NameSpec> peft_default_target_modules(const std::string& model_type);

// Throws Error naming `source` and the key when the config asks for a PEFT feature qlora does not
// implement (DoRA, lora_bias, QALoRA, layer_replication, trainable_token_indices, ...) or is not LoRA.
void check_supported(const LoraConfig& config, const std::string& source);

// The run config's adapter section as a LoraConfig (task_type and base_model_name_or_path are the
// caller's): target_regex wins over target_modules; ["all-linear"] becomes the "all-linear" string; an
// empty target_modules becomes null (PEFT's per-model-type default, resolved by attach_lora);
// init "default" -> true; an empty modules_to_save -> null.
LoraConfig lora_config_from_section(const config::AdapterSection& section);

}  // namespace qlora::peft
