// attach_lora (get_peft_model) and merge_and_unload, plus the plan shared with load_adapter.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "lora_plan.h"
#include "qlora/core/error.h"
#include "qlora/nn/lora_linear.h"
#include "qlora/peft/target_match.h"

namespace qlora::peft {
namespace {

std::string module_of(const std::string& param) { return param.substr(0, param.rfind('.')); }

bool inside(const std::string& key, const std::string& module) {
  return key == module ||
         (key.size() > module.size() && key.compare(0, module.size() + 1, module + ".") == 0);
}

bool inside_any(const std::string& key, const std::vector<std::string>& modules) {
  return std::any_of(modules.begin(), modules.end(), [&](const std::string& m) { return inside(key, m); });
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// 1,234,567 as Python's f"{n:,d}".
std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

}  // namespace

std::optional<NameSpec> peft_default_target_modules(const std::string& model_type) {
  // peft/utils/constants.py, TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING (0.21.2), in its order.
  static const std::vector<std::pair<std::string, std::vector<std::string>>> kTable = {
      {"t5", {"q", "v"}},
      {"mt5", {"q", "v"}},
      {"bart", {"q_proj", "v_proj"}},
      {"gpt2", {"c_attn"}},
      {"bloom", {"query_key_value"}},
      {"blip-2", {"q", "v", "q_proj", "v_proj"}},
      {"opt", {"q_proj", "v_proj"}},
      {"gptj", {"q_proj", "v_proj"}},
      {"gpt_neox", {"query_key_value"}},
      {"gpt_neo", {"q_proj", "v_proj"}},
      {"bert", {"query", "value"}},
      {"roberta", {"query", "value"}},
      {"xlm-roberta", {"query", "value"}},
      {"electra", {"query", "value"}},
      {"deberta-v2", {"query_proj", "value_proj"}},
      {"deberta", {"in_proj"}},
      {"layoutlm", {"query", "value"}},
      {"llama", {"q_proj", "v_proj"}},
      {"llama4", {"q_proj", "v_proj"}},
      {"chatglm", {"query_key_value"}},
      {"gpt_bigcode", {"c_attn"}},
      {"mpt", {"Wqkv"}},
      {"RefinedWebModel", {"query_key_value"}},
      {"RefinedWeb", {"query_key_value"}},
      {"falcon", {"query_key_value"}},
      {"btlm", {"c_proj", "c_attn"}},
      {"codegen", {"qkv_proj"}},
      {"mistral", {"q_proj", "v_proj"}},
      {"mixtral", {"q_proj", "v_proj"}},
      {"stablelm", {"q_proj", "v_proj"}},
      {"phi", {"q_proj", "v_proj", "fc1", "fc2"}},
      {"gemma", {"q_proj", "v_proj"}},
      {"gemma2", {"q_proj", "v_proj"}},
      {"gemma3_text", {"q_proj", "v_proj"}},
      {"qwen2", {"q_proj", "v_proj"}},
      {"qwen3", {"q_proj", "v_proj"}},
      {"nemotron_h", {"q_proj", "k_proj", "v_proj", "o_proj"}},
      {"rwkv", {"key", "value", "receptance", "output"}},
      {"rwkv7", {"r_proj", "k_proj", "v_proj", "o_proj", "key", "value"}},
  };
  // The one entry that is a regex string rather than a list.
  if (model_type == "gemma4") return NameSpec::string(R"(.*language_model\..*\.(q_proj|v_proj))");
  for (const auto& [type, names] : kTable) {
    if (type == model_type) return NameSpec::list(names);
  }
  return std::nullopt;
}

std::vector<std::string> PeftModelView::module_names() const {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& [name, tensor] : parameters) {
    for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1)) {
      const std::string prefix = name.substr(0, dot);
      if (seen.insert(prefix).second) out.push_back(prefix);
    }
  }
  return out;
}

nn::Linear* PeftModelView::linear(const std::string& module) const {
  for (const auto& [name, l] : linears) {
    if (name == module) return l;
  }
  return nullptr;
}

std::string LoraSummary::trainable_line() const {
  char percent[32];
  std::snprintf(percent, sizeof(percent), "%.4f", trainable_percent());
  return "trainable params: " + with_commas(trainable_params) + " || all params: " + with_commas(all_params) +
         " || trainable%: " + percent;
}

namespace detail {

LoraSummary plan_lora(const PeftModelView& view, const LoraConfig& config, bool extend_task_heads,
                      const std::string& source) {
  check_supported(config, source);
  LoraSummary s;
  s.config = config;
  const std::vector<std::string> modules = view.module_names();
  if (is_all_linear(config)) {
    std::vector<std::string> linear_names;
    for (const auto& [name, l] : view.linears) linear_names.push_back(name);
    s.config.target_modules =
        NameSpec::list(expand_all_linear(config, linear_names, modules, view.output_embeddings));
  }
  if (s.config.target_modules.is_null()) {
    // LoraModel._prepare_adapter_config: the model type's default; PEFT saves the resolved set.
    const std::optional<NameSpec> defaults = peft_default_target_modules(view.model_type);
    if (!defaults) {
      fail_at(source, -1,
              "key 'target_modules': null and PEFT 0.21.2 has no default for model_type '" + view.model_type +
                  "' (\"Please specify `target_modules`\"); list the modules or use \"all-linear\"");
    }
    s.config.target_modules = *defaults;
  }
  try {
    for (const std::string& key : modules) {
      if (check_target_module(s.config, key) != TargetMatch::kYes) continue;
      if (view.linear(key) == nullptr) {
        fail("target_modules matches '" + key + "', which is not a linear layer (PEFT rejects it too)");
      }
      s.adapted.push_back(key);
    }
  } catch (const Error& e) {
    fail_at(source, -1, e.what());
  }
  // Model order of the linears (module_names lists parents first, which is the same for leaves).
  std::vector<std::string> ordered;
  for (const auto& [name, l] : view.linears) {
    if (contains(s.adapted, name)) ordered.push_back(name);
  }
  s.adapted = ordered;
  if (s.adapted.empty()) {
    fail_at(source, -1,
            "key 'target_modules': no module of the model matches (PEFT: \"Target modules not "
            "found in the base model\"); first linear is '" +
                (view.linears.empty() ? std::string("<none>") : view.linears.front().first) + "'");
  }

  std::vector<std::string> save_names = config.modules_to_save.value_or(std::vector<std::string>{});
  s.modules_to_save = match_modules_to_save(save_names, modules);
  const std::vector<std::string> heads = task_modules_to_save(config.task_type);
  for (const std::string& head : match_modules_to_save(heads, modules)) {
    if (inside_any(head, s.adapted) || std::any_of(s.adapted.begin(), s.adapted.end(),
                                                   [&](const std::string& a) { return inside(a, head); })) {
      fail_at(source, -1,
              "task_type " + *config.task_type + " makes '" + head +
                  "' a modules_to_save module, but target_modules gives it LoRA (PEFT 0.21.2 fails: "
                  "\"modules_to_save cannot be applied to modules of type lora.Linear\"); add '" +
                  head + "' to modules_to_save");
    }
    if (!inside_any(head, s.modules_to_save)) s.modules_to_save.push_back(head);
  }
  if (extend_task_heads && !heads.empty()) {
    if (!s.config.modules_to_save) s.config.modules_to_save = std::vector<std::string>{};
    s.config.modules_to_save->insert(s.config.modules_to_save->end(), heads.begin(), heads.end());
  }
  return s;
}

std::vector<AdapterTensor> adapter_tensors(const PeftModelView& view, const LoraSummary& s) {
  std::vector<AdapterTensor> out;
  const auto& params = view.parameters;
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& name = params[i].first;
    const std::string module = module_of(name);
    const bool adapted = contains(s.adapted, module);
    const bool is_bias = name.find("bias") != std::string::npos;
    if (inside_any(module, s.modules_to_save)) {
      out.push_back({name, params[i].second});
    } else if (is_bias &&
               (s.config.bias == LoraBias::kAll || (adapted && s.config.bias == LoraBias::kLoraOnly))) {
      // Inside a LoRA layer PEFT's key has the base_layer segment.
      const std::string key = adapted ? module + ".base_layer" + name.substr(module.size()) : name;
      out.push_back({key, params[i].second});
    }
    const bool last_of_module = i + 1 == params.size() || module_of(params[i + 1].first) != module;
    if (adapted && last_of_module) {
      nn::Linear* l = view.linear(module);
      out.push_back({module + ".lora_A.weight", &l->lora.A});
      out.push_back({module + ".lora_B.weight", &l->lora.B});
    }
  }
  return out;
}

void set_trainable(PeftModelView& view, LoraSummary& s, bool trainable) {
  s.all_params = 0;
  for (auto& [name, tensor] : view.parameters) {
    if (!tensor->defined()) continue;  // a quantized weight: counted below from its linear
    tensor->requires_grad_(false);
    s.all_params += tensor->numel();
    if (inside_any(module_of(name), s.modules_to_save)) s.all_params += tensor->numel();  // PEFT's copy
  }
  for (const auto& [name, linear] : view.linears)
    if (linear->base.quantized()) s.all_params += linear->base.in_features() * linear->base.out_features();
  for (const std::string& m : s.adapted) {
    nn::Linear* l = view.linear(m);
    s.all_params += l->lora.A.numel() + l->lora.B.numel();
  }
  s.trainable.clear();
  s.trainable_params = 0;
  if (!trainable) return;
  for (const AdapterTensor& t : adapter_tensors(view, s)) {
    t.tensor->requires_grad_(true);
    s.trainable.push_back(t);
    s.trainable_params += t.tensor->numel();
  }
}

}  // namespace detail

LoraSummary attach_lora(PeftModelView& view, const LoraConfig& config, uint64_t seed) {
  const std::string source = "LoraConfig";
  const std::string& init = config.init_lora_weights;
  if (init != "true" && init != "false" && init != "gaussian") {
    fail_at(source, -1,
            "key 'init_lora_weights': \"" + init +
                "\" is not supported for new adapters "
                "(true, false or \"gaussian\"); adapters initialised so by PEFT load fine");
  }
  LoraSummary s = detail::plan_lora(view, config, /*extend_task_heads=*/true, source);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  for (const std::string& module : s.adapted) {
    nn::Linear* l = view.linear(module);
    const int64_t R = rank_for(s.config, module);
    const int64_t in = l->base.in_features(), out = l->base.out_features();
    nn::LoraAdapter& a = l->lora;
    a = nn::LoraAdapter{};
    a.A = at::empty({R, in}, f32);  // [R, in]
    if (init == "gaussian") {
      a.A.normal_(0.0, 1.0 / static_cast<double>(R), gen);
    } else {
      // kaiming_uniform_(a=sqrt(5)): gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / fan_in) = 1 / sqrt(in).
      const double bound = 1.0 / std::sqrt(static_cast<double>(in));
      a.A.uniform_(-bound, bound, gen);
    }
    a.B = at::zeros({out, R}, f32);  // [out, R]
    if (init == "false") {           // nn.Linear(R, out)'s own init
      const double bound = 1.0 / std::sqrt(static_cast<double>(R));
      a.B.uniform_(-bound, bound, gen);
    }
    a.A = a.A.to(l->base.device());
    a.B = a.B.to(l->base.device());
    a.scaling = scaling_for(s.config, module);
    a.dropout = s.config.lora_dropout;
  }
  detail::set_trainable(view, s, /*trainable=*/true);
  return s;
}

void merge_and_unload(PeftModelView& view) {
  for (auto& [name, linear] : view.linears) {
    if (!linear->lora.defined()) continue;
    nn::merge_adapter(*linear);
    linear->lora = nn::LoraAdapter{};
  }
  for (auto& [name, tensor] : view.parameters)
    if (tensor->defined()) tensor->requires_grad_(false);
}

}  // namespace qlora::peft
