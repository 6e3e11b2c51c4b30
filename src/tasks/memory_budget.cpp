#include "qlora/tasks/memory_budget.h"

#include <algorithm>
#include <cstdio>
#include <string>

#include "qlora/peft/lora_config.h"
#include "qlora/peft/target_match.h"

namespace qlora::tasks {

namespace {

// "auto" (model.dtype) plans for a GPU unless train.device is cpu: 16-bit there, fp32 on the CPU.
int64_t dtype_bytes(const std::string& dtype, const config::RunConfig& cfg) {
  if (dtype == "auto") return cfg.train.device == "cpu" ? 4 : 2;
  return dtype == "fp32" ? 4 : 2;
}

bool is_skipped(const std::string& module, const std::vector<std::string>& skip) {
  for (const auto& s : skip)
    if (module == s ||
        (module.size() > s.size() && module.compare(module.size() - s.size(), s.size(), s) == 0 &&
         module[module.size() - s.size() - 1] == '.'))
      return true;
  return false;
}

// Bytes autograd keeps for one transformer block of a B x T batch in activation dtype `b`
// (eager attention, the form qlora and transformers' "eager" path run):
//   decoder (llama): both norm inputs and outputs (4C), q/k/v and their rotated copies (2Q + 3KV... as
//   Q + KV for the rotation), attention output (Q), the gated MLP's gate, up, act(gate) and product (4I);
//   attention probabilities H x T x T once in fp32 (softmax upcast) and once in b.
//   mpt: norms (4C), fused qkv (C + 2KV), attention output (C), up and GELU output (2I), probabilities.
//   encoder: q, k, v, context, two norm in/out pairs (~8C), intermediate + GELU (2I), probabilities and
//   their dropout mask.
int64_t block_activation_bytes(const models::ModelShape& s, int64_t B, int64_t T, int64_t b) {
  const int64_t C = s.hidden, Q = s.heads * s.head_dim, KV = s.kv_heads * s.head_dim, I = s.intermediate;
  const int64_t probs = B * s.heads * T * T * (4 + b);
  if (s.family == "llama") return B * T * b * (4 * C + 3 * Q + 3 * KV + 4 * I) + probs;
  if (s.family == "mpt") return B * T * b * (4 * C + (C + 2 * KV) + C + 2 * I) + probs;
  return B * T * b * (8 * C + 2 * I) + probs;
}

}  // namespace

double bits_per_param_4bit(int64_t blocksize, bool double_quant) {
  const double bs = static_cast<double>(blocksize);
  return double_quant ? 4.0 + 8.0 / bs + 32.0 / (bs * 256.0) : 4.0 + 32.0 / bs;
}

int64_t MemoryBudget::total_bytes() const {
  int64_t t = 0;
  for (const auto& c : components) t += c.bytes;
  return t;
}

Json MemoryBudget::to_json() const {
  Json comps = Json::object();
  for (const auto& c : components) comps[c.name] = c.bytes;
  Json notes = Json::object();
  for (const auto& c : components) notes[c.name] = c.note;
  return {{"components", comps},
          {"notes", notes},
          {"total_bytes", total_bytes()},
          {"total_params", total_params},
          {"trainable_params", trainable_params},
          {"quantized_params", quantized_params},
          {"bits_per_quantized_param", bits_per_quantized_param}};
}

std::string MemoryBudget::to_table() const {
  std::string out;
  char line[256];
  for (const auto& c : components) {
    std::snprintf(line, sizeof line, "  %-18s %9.3f GiB  %s\n", c.name.c_str(), c.bytes / 1073741824.0,
                  c.note.c_str());
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-18s %9.3f GiB\n", "total", total_bytes() / 1073741824.0);
  return out + line;
}

MemoryBudget memory_budget(const config::RunConfig& cfg, const models::ModelShape& s) {
  MemoryBudget m;
  m.total_params = s.total_params();
  const bool full = cfg.adapter.type == "full";
  const bool q4 = cfg.quantization.load_in_4bit, q8 = cfg.quantization.load_in_8bit;
  // mixed_precision "auto" is bf16 / fp16 on a GPU and off on the CPU (ops::resolve_mixed_precision).
  const bool mixed =
      cfg.train.mixed_precision == "auto" ? cfg.train.device != "cpu" : cfg.train.mixed_precision != "no";
  // Storage of the frozen (or, for full fine-tuning, trained) weights that are not quantized.
  const int64_t weight_bytes =
      full && mixed ? 4 : dtype_bytes(q4 || q8 ? cfg.quantization.compute_dtype : cfg.model.dtype, cfg);
  const int64_t act_bytes = mixed ? 2 : dtype_bytes(cfg.model.dtype, cfg);

  // Which linears are quantized: all but the output head, the family's keep_dense modules and
  // quantization.skip_modules (transformers' llm_int8_skip_modules / get_keys_to_not_convert).
  int64_t base = 0, stats = 0;
  m.bits_per_quantized_param =
      q4   ? bits_per_param_4bit(cfg.quantization.blocksize, cfg.quantization.double_quant)
      : q8 ? 8.0
           : 0.0;
  for (const auto& l : s.linears) {
    const int64_t w = l.in * l.out, b = l.bias ? l.out : 0;
    const bool quantized = (q4 || q8) && !full && l.module != s.output_embeddings &&
                           !is_skipped(l.module, cfg.quantization.skip_modules) &&
                           !is_skipped(l.module, s.keep_dense);
    if (quantized) {
      m.quantized_params += w;
      base += q4 ? (w + 1) / 2 : w;
      stats += q4 ? static_cast<int64_t>(w * (m.bits_per_quantized_param - 4.0) / 8.0) : l.out * 4;
      base += b * weight_bytes;
    } else {
      base += (w + b) * weight_bytes;
    }
  }
  base += s.other_params() * weight_bytes;
  m.components.push_back(
      {"base_weights", base,
       q4   ? "4-bit linears (output head and skip_modules in " + cfg.quantization.compute_dtype + ")"
       : q8 ? "int8 linears + row scales"
            : (full && mixed ? "fp32 master weights" : cfg.model.dtype + " weights")});
  if (q4 || q8)
    m.components.push_back({"quant_stats", stats, q4 ? "absmax (double-quantized when enabled)" : "SCB"});

  // Trainable parameters: LoRA A/B (fp32, as PEFT keeps adapters) on every target, or all weights.
  int64_t trainable = 0;
  if (full) {
    trainable = m.total_params;
  } else {
    peft::LoraConfig lc = peft::lora_config_from_section(cfg.adapter);
    std::vector<std::string> names;
    for (const auto& l : s.linears) names.push_back(l.module);
    if (peft::is_all_linear(lc)) {
      lc.target_modules =
          peft::NameSpec::list(peft::expand_all_linear(lc, names, names, s.output_embeddings));
    }
    int64_t saved = 0;  // modules_to_save: trained in full (a second, trainable copy in PEFT)
    for (const auto& l : s.linears) {
      if (is_skipped(l.module, cfg.adapter.modules_to_save))
        saved += l.in * l.out + (l.bias ? l.out : 0);
      else if (peft::check_target_module(lc, l.module) == peft::TargetMatch::kYes)
        trainable += cfg.adapter.r * (l.in + l.out);
    }
    trainable += saved;
    m.components.push_back({"adapter_weights", trainable * 4, "LoRA A and B (+ modules_to_save) in fp32"});
  }
  m.trainable_params = trainable;
  if (full && mixed) m.components.push_back({"autocast_copies", m.total_params * 2, "16-bit weight copies"});
  m.components.push_back({"gradients", trainable * 4, "fp32 gradients of trainable parameters"});
  const std::string& optim = cfg.train.optim;
  const bool eight_bit = optim.find("8bit") != std::string::npos;
  const bool paged = optim.rfind("paged_", 0) == 0;
  m.components.push_back({"optimizer_states", trainable * (eight_bit ? 2 : 8),
                          std::string(eight_bit ? "AdamW 8-bit m and v" : "AdamW fp32 m and v") +
                              (paged ? " (paged: evicted to host memory under pressure)" : "")});

  // Activations of one micro batch.
  const int64_t B = cfg.train.micro_batch_size;
  const int64_t T = cfg.data.max_seq_length;
  int64_t acts = 0;
  std::string note;
  if (s.family == "t5") {
    const int64_t Tt = cfg.data.max_target_length;
    const int64_t half = s.num_layers / 2;
    const int64_t enc_block = block_activation_bytes(s, B, T, act_bytes);
    const int64_t dec_block =
        block_activation_bytes(s, B, Tt, act_bytes) + B * s.heads * Tt * T * (4 + act_bytes);
    if (cfg.train.gradient_checkpointing) {
      acts = half * B * (T + Tt) * s.hidden * act_bytes + std::max(enc_block, dec_block);
      note = "block inputs + one block recomputed (gradient checkpointing)";
    } else {
      acts = half * (enc_block + dec_block);
      note = "every block's saved tensors (estimate)";
    }
  } else {
    const int64_t block = block_activation_bytes(s, B, T, act_bytes);
    if (cfg.train.gradient_checkpointing) {
      acts = s.num_layers * B * T * s.hidden * act_bytes + block;
      note = "block inputs + one block recomputed (gradient checkpointing)";
    } else {
      acts = s.num_layers * block;
      note = "every block's saved tensors (estimate)";
    }
  }
  m.components.push_back({"activations", acts, note});
  if (!s.output_embeddings.empty()) {
    // The loss runs the head on chunks of at most train.loss_chunk_tokens label tokens (nn/lm_loss.h),
    // recomputed in backward: only one chunk's logits exist at once.
    const int64_t Tl = s.family == "t5" ? cfg.data.max_target_length : T;
    const int64_t chunk = cfg.train.loss_chunk_tokens;
    const int64_t rows = chunk > 0 ? std::min(chunk, B * Tl) : B * Tl;
    m.components.push_back({"logits", rows * s.vocab * 4 * 3,
                            "fp32 logits, log-softmax and their gradient of " +
                                (rows < B * Tl ? std::to_string(rows) + " tokens (train.loss_chunk_tokens)"
                                               : std::to_string(rows) + " tokens (the micro batch)")});
  }
  if (cfg.train.device != "cpu")
    m.components.push_back({"cuda_runtime", int64_t{600} << 20, "CUDA context + cuBLAS workspace (typical)"});
  return m;
}

}  // namespace qlora::tasks
