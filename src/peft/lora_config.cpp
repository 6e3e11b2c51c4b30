// adapter_config.json <-> LoraConfig, field for field as peft 0.21.2 writes it.
#include "qlora/peft/lora_config.h"

#include <cmath>
#include <set>

#include "qlora/config/run_config.h"
#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/log.h"

namespace qlora::peft {
namespace {

using SortedJson = nlohmann::json;  // std::map objects: keys sorted as Python's sort_keys=True

// PEFT 0.21.2 LoraConfig fields qlora does not type, with asdict()'s defaults (runtime_config is
// dropped by LoraConfig.to_dict). Loaded values replace these and are written back unchanged.
const Json& other_field_defaults() {
  static const Json defaults = Json::parse(R"({
    "alora_invocation_tokens": null, "arrow_config": null, "corda_config": null,
    "ensure_weight_tying": false, "eva_config": null, "kasa_config": null, "layer_replication": null,
    "loftq_config": {}, "lora_bias": false, "lora_ga_config": null, "megatron_config": null,
    "megatron_core": "megatron.core", "monteclora_config": null, "qalora_group_size": 16,
    "target_parameters": null, "trainable_token_indices": null, "use_bdlora": null, "use_dora": false,
    "use_qalora": false, "velora_config": null})");
  return defaults;
}

// Keys PEFT knows but never writes (runtime-only); accepted silently when read.
const std::set<std::string>& ignored_keys() {
  static const std::set<std::string> keys = {"runtime_config"};
  return keys;
}

// Other fields that change the adapter's math or layout; any value but the default is rejected.
const std::vector<std::string>& unsupported_fields() {
  static const std::vector<std::string> fields = {"alora_invocation_tokens",
                                                  "arrow_config",
                                                  "kasa_config",
                                                  "layer_replication",
                                                  "lora_bias",
                                                  "monteclora_config",
                                                  "target_parameters",
                                                  "trainable_token_indices",
                                                  "use_bdlora",
                                                  "use_dora",
                                                  "use_qalora",
                                                  "velora_config"};
  return fields;
}

std::string type_name(const Json& v) {
  if (v.is_number_integer()) return "an integer";
  if (v.is_number_float()) return "a float";
  return std::string(v.type_name());
}

[[noreturn]] void bad_type(const std::string& source, const std::string& key, const std::string& expected,
                           const Json& got) {
  fail_at(source, -1, "key '" + key + "': expected " + expected + ", got " + type_name(got));
}

int64_t get_int(const Json& v, const std::string& source, const std::string& key) {
  if (!v.is_number_integer()) bad_type(source, key, "an integer", v);
  return v.get<int64_t>();
}

double get_number(const Json& v, const std::string& source, const std::string& key) {
  if (!v.is_number()) bad_type(source, key, "a number", v);
  return v.get<double>();
}

bool get_bool(const Json& v, const std::string& source, const std::string& key) {
  if (!v.is_boolean()) bad_type(source, key, "true or false", v);
  return v.get<bool>();
}

std::optional<std::string> get_opt_string(const Json& v, const std::string& source, const std::string& key) {
  if (v.is_null()) return std::nullopt;
  if (!v.is_string()) bad_type(source, key, "a string or null", v);
  return v.get<std::string>();
}

std::vector<std::string> get_string_list(const Json& v, const std::string& source, const std::string& key) {
  if (!v.is_array()) bad_type(source, key, "a list of strings", v);
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) bad_type(source, key + "[" + std::to_string(i) + "]", "a string", v[i]);
    out.push_back(v[i].get<std::string>());
  }
  return out;
}

NameSpec get_name_spec(const Json& v, const std::string& source, const std::string& key) {
  if (v.is_null()) return NameSpec::null();
  if (v.is_string()) return NameSpec::string(v.get<std::string>());
  if (v.is_array()) return NameSpec::list(get_string_list(v, source, key));
  bad_type(source, key, "a string, a list of strings or null", v);
}

SortedJson name_spec_json(const NameSpec& spec) {
  switch (spec.kind) {
    case NameSpec::Kind::kNull:
      return nullptr;
    case NameSpec::Kind::kString:
      return spec.text;
    case NameSpec::Kind::kList:
      return spec.names;
  }
  return nullptr;
}

// Python writes int-typed values without ".0"; qlora keeps alpha as a double and writes integral
// values as integers.
SortedJson number_json(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9.0e15) return static_cast<int64_t>(v);
  return v;
}

SortedJson opt_string_json(const std::optional<std::string>& v) {
  return v ? SortedJson(*v) : SortedJson(nullptr);
}

}  // namespace

const char* to_string(LoraBias bias) {
  switch (bias) {
    case LoraBias::kNone:
      return "none";
    case LoraBias::kAll:
      return "all";
    case LoraBias::kLoraOnly:
      return "lora_only";
  }
  return "none";
}

std::vector<std::string> NameSpec::as_list() const {
  if (kind == Kind::kList) return names;
  if (kind == Kind::kString) return {text};
  return {};
}

std::string lora_config_to_json(const LoraConfig& c) {
  SortedJson out = SortedJson::object();
  for (const auto& [key, value] : other_field_defaults().items()) {
    out[key] = SortedJson::parse(c.other_fields.contains(key) ? c.other_fields.at(key).dump() : value.dump());
  }
  out["alpha_pattern"] = SortedJson::object();
  for (const auto& [k, v] : c.alpha_pattern) out["alpha_pattern"][k] = number_json(v);
  out["auto_mapping"] =
      c.auto_mapping.is_null() ? SortedJson(nullptr) : SortedJson::parse(c.auto_mapping.dump());
  out["base_model_name_or_path"] = opt_string_json(c.base_model_name_or_path);
  out["bias"] = to_string(c.bias);
  out["exclude_modules"] = name_spec_json(c.exclude_modules);
  out["fan_in_fan_out"] = c.fan_in_fan_out;
  out["inference_mode"] = c.inference_mode;
  if (c.init_lora_weights == "true" || c.init_lora_weights == "false") {
    out["init_lora_weights"] = c.init_lora_weights == "true";
  } else {
    out["init_lora_weights"] = c.init_lora_weights;
  }
  out["layers_pattern"] = name_spec_json(c.layers_pattern);
  if (!c.layers_to_transform) {
    out["layers_to_transform"] = nullptr;
  } else if (c.layers_to_transform_is_int && c.layers_to_transform->size() == 1) {
    out["layers_to_transform"] = c.layers_to_transform->front();
  } else {
    out["layers_to_transform"] = *c.layers_to_transform;
  }
  out["lora_alpha"] = number_json(c.lora_alpha);
  out["lora_dropout"] = c.lora_dropout;
  out["modules_to_save"] = c.modules_to_save ? SortedJson(*c.modules_to_save) : SortedJson(nullptr);
  out["peft_type"] = c.peft_type;
  out["peft_version"] = opt_string_json(c.peft_version);
  out["r"] = c.r;
  out["rank_pattern"] = SortedJson::object();
  for (const auto& [k, v] : c.rank_pattern) out["rank_pattern"][k] = v;
  out["revision"] = opt_string_json(c.revision);
  out["target_modules"] = name_spec_json(c.target_modules);
  out["task_type"] = opt_string_json(c.task_type);
  out["use_rslora"] = c.use_rslora;
  return out.dump(2, ' ', /*ensure_ascii=*/true);
}

LoraConfig lora_config_from_json(const std::string& text, const std::string& source) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail_at(source, -1, std::string("malformed JSON: ") + e.what());
  }
  if (!j.is_object()) fail_at(source, -1, "expected a JSON object, got " + type_name(j));
  LoraConfig c;
  std::vector<std::string> unknown;
  for (const auto& [key, v] : j.items()) {
    if (key == "r") {
      c.r = get_int(v, source, key);
    } else if (key == "lora_alpha") {
      c.lora_alpha = get_number(v, source, key);
    } else if (key == "lora_dropout") {
      c.lora_dropout = get_number(v, source, key);
    } else if (key == "target_modules") {
      c.target_modules = get_name_spec(v, source, key);
    } else if (key == "exclude_modules") {
      c.exclude_modules = get_name_spec(v, source, key);
    } else if (key == "fan_in_fan_out") {
      c.fan_in_fan_out = get_bool(v, source, key);
    } else if (key == "bias") {
      const std::optional<std::string> b = get_opt_string(v, source, key);
      if (b == "none")
        c.bias = LoraBias::kNone;
      else if (b == "all")
        c.bias = LoraBias::kAll;
      else if (b == "lora_only")
        c.bias = LoraBias::kLoraOnly;
      else
        fail_at(source, -1, "key 'bias': expected \"none\", \"all\" or \"lora_only\", got " + v.dump());
    } else if (key == "use_rslora") {
      c.use_rslora = get_bool(v, source, key);
    } else if (key == "modules_to_save") {
      if (!v.is_null()) c.modules_to_save = get_string_list(v, source, key);
    } else if (key == "init_lora_weights") {
      if (v.is_boolean())
        c.init_lora_weights = v.get<bool>() ? "true" : "false";
      else if (v.is_string())
        c.init_lora_weights = v.get<std::string>();
      else
        bad_type(source, key, "true, false or a string", v);
    } else if (key == "layers_to_transform") {
      if (v.is_number_integer()) {
        c.layers_to_transform = std::vector<int64_t>{v.get<int64_t>()};
        c.layers_to_transform_is_int = true;
      } else if (v.is_array()) {
        std::vector<int64_t> layers;
        for (size_t i = 0; i < v.size(); ++i)
          layers.push_back(get_int(v[i], source, key + "[" + std::to_string(i) + "]"));
        c.layers_to_transform = layers;
      } else if (!v.is_null()) {
        bad_type(source, key, "an integer, a list of integers or null", v);
      }
    } else if (key == "layers_pattern") {
      c.layers_pattern = get_name_spec(v, source, key);
    } else if (key == "rank_pattern" || key == "alpha_pattern") {
      if (v.is_null()) continue;
      if (!v.is_object()) bad_type(source, key, "an object", v);
      for (const auto& [pattern, value] : v.items()) {
        const std::string where = key + "." + pattern;
        if (key == "rank_pattern")
          c.rank_pattern.emplace_back(pattern, get_int(value, source, where));
        else
          c.alpha_pattern.emplace_back(pattern, get_number(value, source, where));
      }
    } else if (key == "task_type") {
      c.task_type = get_opt_string(v, source, key);
    } else if (key == "base_model_name_or_path") {
      c.base_model_name_or_path = get_opt_string(v, source, key);
    } else if (key == "revision") {
      c.revision = get_opt_string(v, source, key);
    } else if (key == "peft_type") {
      const std::optional<std::string> t = get_opt_string(v, source, key);
      if (!t) bad_type(source, key, "a string", v);
      c.peft_type = *t;
    } else if (key == "peft_version") {
      c.peft_version = get_opt_string(v, source, key);
    } else if (key == "inference_mode") {
      c.inference_mode = get_bool(v, source, key);
    } else if (key == "auto_mapping") {
      if (!v.is_null() && !v.is_object()) bad_type(source, key, "an object or null", v);
      c.auto_mapping = v;
    } else if (other_field_defaults().contains(key)) {
      c.other_fields[key] = v;
    } else if (!ignored_keys().count(key)) {
      unknown.push_back(key);
    }
  }
  if (!unknown.empty()) {
    std::string list;
    for (const std::string& k : unknown) list += (list.empty() ? "" : ", ") + k;
    log::warn(located(
        source, -1,
        "ignoring keys unknown to PEFT " + std::string(kPeftFormatVersion) + "'s LoraConfig: " + list));
  }
  if (c.r <= 0) fail_at(source, -1, "key 'r': must be positive, got " + std::to_string(c.r));
  for (const auto& [pattern, r] : c.rank_pattern) {
    if (r <= 0) fail_at(source, -1, "key 'rank_pattern." + pattern + "': must be positive");
  }
  if (c.lora_dropout < 0 || c.lora_dropout >= 1) {
    fail_at(source, -1, "key 'lora_dropout': must be in [0, 1), got " + std::to_string(c.lora_dropout));
  }
  return c;
}

LoraConfig read_lora_config(const std::string& path) { return lora_config_from_json(read_file(path), path); }

void check_supported(const LoraConfig& config, const std::string& source) {
  if (config.peft_type != "LORA") {
    fail_at(source, -1, "key 'peft_type': qlora reads LoRA adapters only, got \"" + config.peft_type + "\"");
  }
  for (const std::string& key : unsupported_fields()) {
    if (!config.other_fields.contains(key)) continue;
    const Json& v = config.other_fields.at(key);
    if (v.dump() != other_field_defaults().at(key).dump()) {
      fail_at(source, -1,
              "key '" + key + "': " + v.dump() + " is not supported by qlora (only " +
                  other_field_defaults().at(key).dump() + ")");
    }
  }
}

LoraConfig lora_config_from_section(const config::AdapterSection& s) {
  LoraConfig c;
  c.r = s.r;
  c.lora_alpha = s.alpha;
  c.lora_dropout = s.dropout;
  if (!s.target_regex.empty()) {
    c.target_modules = NameSpec::string(s.target_regex);
  } else if (s.target_modules.empty()) {
    c.target_modules = NameSpec::null();  // PEFT's default for the model type (attach_lora resolves it)
  } else if (s.target_modules.size() == 1 && s.target_modules[0] == "all-linear") {
    c.target_modules = NameSpec::string("all-linear");
  } else {
    c.target_modules = NameSpec::list(s.target_modules);
  }
  if (s.bias == "none")
    c.bias = LoraBias::kNone;
  else if (s.bias == "all")
    c.bias = LoraBias::kAll;
  else if (s.bias == "lora_only")
    c.bias = LoraBias::kLoraOnly;
  else
    fail("adapter.bias: expected none, all or lora_only, got '" + s.bias + "'");
  if (!s.modules_to_save.empty()) c.modules_to_save = s.modules_to_save;
  c.use_rslora = s.use_rslora;
  if (s.init == "default")
    c.init_lora_weights = "true";
  else if (s.init == "gaussian")
    c.init_lora_weights = "gaussian";
  else
    fail("adapter.init: expected default or gaussian, got '" + s.init + "'");
  return c;
}

}  // namespace qlora::peft
