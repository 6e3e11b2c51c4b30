// PEFT's target-module matching, rule for rule (see the header for the Python each function mirrors).
#include "qlora/peft/target_match.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <mutex>
#include <regex>

#include "qlora/core/error.h"

namespace qlora::peft {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool in_list_or_suffix(const std::vector<std::string>& names, const std::string& key) {
  return std::any_of(names.begin(), names.end(),
                     [&](const std::string& t) { return key == t || ends_with(key, "." + t); });
}

// Python's named groups (?P<name>...) become ECMAScript groups; the rest is passed through.
std::string to_ecmascript(const std::string& pattern) {
  std::string out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      out += pattern.substr(i, 2);
      ++i;
    } else if (pattern.compare(i, 4, "(?P<") == 0) {
      const size_t close = pattern.find('>', i);
      if (close == std::string::npos) return pattern;  // let std::regex report it
      out += "(";
      i = close;
    } else {
      out += pattern[i];
    }
  }
  return out;
}

// Patterns are compiled once; a config holds few of them.
const std::regex& compiled(const std::string& pattern, const std::string& what) {
  static std::mutex mutex;
  static std::map<std::string, std::regex> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(pattern);
  if (it != cache.end()) return it->second;
  try {
    return cache.emplace(pattern, std::regex(to_ecmascript(pattern), std::regex::ECMAScript)).first->second;
  } catch (const std::regex_error& e) {
    fail(what + ": invalid or unsupported regular expression '" + pattern + "' (" + e.what() +
         "; qlora uses ECMAScript syntax, see include/qlora/peft/target_match.h)");
  }
}

bool search_at_start(const std::string& pattern, const std::string& text, const std::string& what,
                     std::smatch* m = nullptr) {
  std::smatch local;
  return std::regex_search(text, m ? *m : local, compiled(pattern, what),
                           std::regex_constants::match_continuous);
}

}  // namespace

bool python_fullmatch(const std::string& pattern, const std::string& text, const std::string& what) {
  return std::regex_match(text, compiled("(?:" + pattern + ")", what));
}

bool python_match(const std::string& pattern, const std::string& text, const std::string& what) {
  return search_at_start(pattern, text, what);
}

std::optional<int64_t> layer_index(const LoraConfig& config, const std::string& key) {
  std::smatch m;
  const std::vector<std::string> patterns = config.layers_pattern.as_list();
  bool found = false;
  if (patterns.empty()) {
    // Lazy: the first numbered segment, not a nested index such as an MoE expert's.
    found = search_at_start(R"(.*?\.[^.]*\.(\d+)\.)", key, "layers_to_transform", &m);
  } else {
    for (const std::string& p : patterns) {
      if (search_at_start(R"((?:^|.*?\.))" + p + R"(\.(\d+)\.)", key, "layers_pattern", &m)) {
        found = true;
        break;
      }
    }
  }
  if (!found) return std::nullopt;
  return std::stoll(m[1].str());
}

TargetMatch check_target_module(const LoraConfig& config, const std::string& key) {
  const NameSpec& exclude = config.exclude_modules;
  if (exclude.is_string() && !exclude.text.empty()) {
    if (python_fullmatch(exclude.text, key, "exclude_modules")) return TargetMatch::kExcluded;
  } else if (exclude.is_list() && in_list_or_suffix(exclude.names, key)) {
    return TargetMatch::kExcluded;
  }
  // A module to save is never also given an adapter, nor is anything inside it.
  if (config.modules_to_save) {
    for (const std::string& m : *config.modules_to_save) {
      if (python_match(R"((^|.*\.))" + m + R"(($|\..*))", key, "modules_to_save"))
        return TargetMatch::kExcluded;
    }
  }
  const NameSpec& target = config.target_modules;
  if (target.is_null()) return TargetMatch::kNo;
  if (target.is_string()) {
    if (is_all_linear(config)) fail("target_modules 'all-linear' must be expanded before matching");
    return python_fullmatch(target.text, key, "target_modules") ? TargetMatch::kYes : TargetMatch::kNo;
  }
  if (std::find(target.names.begin(), target.names.end(), key) != target.names.end())
    return TargetMatch::kYes;
  bool found = std::any_of(target.names.begin(), target.names.end(),
                           [&](const std::string& t) { return ends_with(key, "." + t); });
  // PEFT treats layers_to_transform = [] as "not given".
  const bool using_layers = config.layers_to_transform &&
                            !(config.layers_to_transform->empty() && !config.layers_to_transform_is_int);
  if (using_layers && found) {
    const std::optional<int64_t> index = layer_index(config, key);
    const std::vector<int64_t>& wanted = *config.layers_to_transform;
    found = index && std::find(wanted.begin(), wanted.end(), *index) != wanted.end();
  }
  return found ? TargetMatch::kYes : TargetMatch::kNo;
}

bool is_all_linear(const LoraConfig& config) {
  if (!config.target_modules.is_string()) return false;
  std::string lower = config.target_modules.text;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return lower == "all-linear";
}

std::vector<std::string> expand_all_linear(const LoraConfig& config,
                                           const std::vector<std::string>& linear_names,
                                           const std::vector<std::string>& module_names,
                                           const std::string& output_embeddings) {
  std::string excluded;
  if (!output_embeddings.empty()) {
    excluded = output_embeddings;
  } else if (config.task_type == std::string("SEQ_CLS")) {
    for (const std::string head : {"score", "classifier"}) {
      if (std::find(module_names.begin(), module_names.end(), head) != module_names.end()) {
        excluded = head;
        break;
      }
    }
  }
  std::vector<std::string> out;
  for (const std::string& name : linear_names) {
    if (name != excluded) out.push_back(name);
  }
  return out;
}

std::optional<std::string> pattern_key(const std::vector<std::string>& pattern_keys,
                                       const std::string& module_key) {
  for (const std::string& key : pattern_keys) {
    if (python_match(R"((.*\.)?()" + key + ")$", module_key, "rank_pattern/alpha_pattern")) return key;
  }
  return std::nullopt;
}

int64_t rank_for(const LoraConfig& config, const std::string& module_key) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : config.rank_pattern) keys.push_back(k);
  const std::optional<std::string> k = pattern_key(keys, module_key);
  if (!k) return config.r;
  for (const auto& [pk, v] : config.rank_pattern) {
    if (pk == *k) return v;
  }
  return config.r;
}

double alpha_for(const LoraConfig& config, const std::string& module_key) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : config.alpha_pattern) keys.push_back(k);
  const std::optional<std::string> k = pattern_key(keys, module_key);
  if (!k) return config.lora_alpha;
  for (const auto& [pk, v] : config.alpha_pattern) {
    if (pk == *k) return v;
  }
  return config.lora_alpha;
}

double scaling_for(const LoraConfig& config, const std::string& module_key) {
  const double r = static_cast<double>(rank_for(config, module_key));
  const double alpha = alpha_for(config, module_key);
  return config.use_rslora ? alpha / std::sqrt(r) : alpha / r;
}

std::vector<std::string> match_modules_to_save(const std::vector<std::string>& names,
                                               const std::vector<std::string>& module_names) {
  std::vector<std::string> out;
  for (const std::string& key : module_names) {
    const bool inside_chosen = std::any_of(out.begin(), out.end(), [&](const std::string& m) {
      return key.size() > m.size() && key.compare(0, m.size() + 1, m + ".") == 0;
    });
    if (inside_chosen) continue;
    if (std::any_of(names.begin(), names.end(), [&](const std::string& n) { return ends_with(key, n); })) {
      out.push_back(key);
    }
  }
  return out;
}

std::vector<std::string> task_modules_to_save(const std::optional<std::string>& task_type) {
  if (!task_type) return {};
  if (*task_type == "QUESTION_ANS") return {"qa_outputs"};
  if (*task_type == "SEQ_CLS" || *task_type == "TOKEN_CLS") return {"classifier", "score"};
  return {};
}

}  // namespace qlora::peft
