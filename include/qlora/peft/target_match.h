// Which modules a LoraConfig adapts, exactly as peft 0.21.2 decides it (tuners/tuners_utils.py
// check_target_module_exists and _maybe_include_all_linear_layers, utils/other.py get_pattern_key and
// _set_trainable). Keys are HF module paths as PEFT sees them
// ("roberta.encoder.layer.0.attention.self.query").
//
// Python `re` is emulated with std::regex (ECMAScript): re.fullmatch(p, s) is regex_match of (?:p);
// re.match(p, s) is regex_search with match_continuous. Differences: Python's named groups (?P<name>...)
// are rewritten to plain groups; (?P=name), lookbehind, \A, \Z, possessive quantifiers and inline flags
// such as (?i) are not supported by ECMAScript and give an Error naming the pattern. Python's `$` also
// matches before a trailing newline, which module names never contain.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qlora/peft/lora_config.h"

namespace qlora::peft {

// Python re.fullmatch / re.match (at the start, not necessarily to the end). `what` names the pattern
// in errors ("target_modules").
bool python_fullmatch(const std::string& pattern, const std::string& text, const std::string& what);
bool python_match(const std::string& pattern, const std::string& text, const std::string& what);

enum class TargetMatch { kNo, kYes, kExcluded };

// check_target_module_exists: exclude_modules (list: key == e or ends with "." + e; string:
// fullmatch), then modules_to_save (re.match(r"(^|.*\.)M($|\..*)"): a saved module and everything
// inside it), then target_modules (string: fullmatch; list: key == t, or ends with "." + t, then
// layers_to_transform / layers_pattern; the layer filter does not apply to an exact key == t).
// target_modules must not be "all-linear" here: expand it first with expand_all_linear.
TargetMatch check_target_module(const LoraConfig& config, const std::string& key);

// The layer index layers_to_transform compares against: the first numbered segment after
// layers_pattern (re.match(r"(?:^|.*?\.)P\.(\d+)\.")), or after any segment when layers_pattern is
// empty (r".*?\.[^.]*\.(\d+)\."); nullopt when there is none.
std::optional<int64_t> layer_index(const LoraConfig& config, const std::string& key);

// True when target_modules is the string "all-linear" (any case, as PEFT lowercases it).
bool is_all_linear(const LoraConfig& config);

// What _maybe_include_all_linear_layers turns "all-linear" into: every linear module except the
// model's output embeddings (lm_head of a generative model) and, for task_type "SEQ_CLS" when there is
// no output embedding, the module named `score` or else `classifier` (PEFT's SEQ_CLS_HEAD_NAMES: the
// first of them the model has; excluded only if it is itself a linear, so RoBERTa's classifier head
// module keeps LoRA on classifier.dense / classifier.out_proj). Nothing is excluded for other tasks:
// a QA model's qa_outputs is a target unless it is in modules_to_save.
// `linear_names`: every linear module in model order; `module_names`: every module (to tell whether
// `score` exists). The result is in the order of `linear_names` (PEFT's is a set).
std::vector<std::string> expand_all_linear(const LoraConfig& config,
                                           const std::vector<std::string>& linear_names,
                                           const std::vector<std::string>& module_names,
                                           const std::string& output_embeddings);

// get_pattern_key: the first key of `pattern_keys` (in order) with re.match(rf"(.*\.)?({key})$",
// module_key); nullopt when none matches.
std::optional<std::string> pattern_key(const std::vector<std::string>& pattern_keys,
                                       const std::string& module_key);

// r and lora_alpha of one module after rank_pattern / alpha_pattern.
int64_t rank_for(const LoraConfig& config, const std::string& module_key);
double alpha_for(const LoraConfig& config, const std::string& module_key);
// lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.
double scaling_for(const LoraConfig& config, const std::string& module_key);

// The modules_to_save wrappers _set_trainable creates: every module whose key ends with one of the
// names (a plain string suffix, no dot boundary: PEFT's key.endswith(target_key)), in `module_names`
// order, skipping modules inside one already chosen.
std::vector<std::string> match_modules_to_save(const std::vector<std::string>& names,
                                               const std::vector<std::string>& module_names);

// The heads PEFT's task-specific PeftModel classes append to modules_to_save after injecting LoRA:
// QUESTION_ANS -> qa_outputs; SEQ_CLS and TOKEN_CLS -> classifier, score; none otherwise.
std::vector<std::string> task_modules_to_save(const std::optional<std::string>& task_type);

}  // namespace qlora::peft
