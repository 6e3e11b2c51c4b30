// The LLaMA family of decoders: LLaMA 1/2/3, Mistral (sliding-window attention) and Qwen2 (q/k/v bias,
// tied embeddings). The variants are flags of LlamaConfig on one forward; see src/models/llama.cpp for
// the one table of tensor names. Used through models::CausalLM (load_causal_lm).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qlora/io/hf_config.h"
#include "qlora/models/causal_lm.h"
#include "qlora/nn/lora_linear.h"
#include "qlora/nn/rope.h"

namespace qlora::models {

struct LlamaConfig {
  std::string model_type;  // "llama", "mistral" or "qwen2"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;  // C
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;     // H
  int64_t num_kv_heads = 0;  // Hkv; H % Hkv == 0 (GQA)
  int64_t head_dim = 0;      // D: config head_dim, else C / H
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  nn::RopeConfig rope;
  bool qkv_bias = false;  // LLaMA attention_bias; always on for Qwen2
  bool o_bias = false;    // LLaMA attention_bias; off for Qwen2 and Mistral
  bool mlp_bias = false;  // LLaMA mlp_bias
  bool tie_word_embeddings = false;
  // Keys older than this many positions are masked (Mistral; Qwen2 with use_sliding_window); 0 = off.
  int64_t sliding_window = 0;
  std::vector<bool> sliding_layers;  // per layer: whether sliding_window applies (Qwen2 layer_types)
  double attention_dropout = 0.0;
  std::string hf_class_name;  // "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"

  // Reads config.json; errors name the file and key (unsupported rope_type / hidden_act, bad shapes).
  static LlamaConfig from_hf_config(const HfConfig& hf);
};

// x.float() * rsqrt(mean(x^2) + eps), cast back to x's dtype, then * weight (LlamaRMSNorm's order).
at::Tensor llama_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// The sliding_window / causal / padding / segment mask of one forward as an additive bias
// [B, 1, T, S + T] in `dtype` (0 allowed, finfo(dtype).min masked, as transformers' eager mask).
// `key_mask` [B, S + T] (undefined: all keys real), `segment_ids` [B, T] (undefined: one segment; only
// without a cache, S == 0).
at::Tensor decoder_attention_bias(int64_t B, int64_t T, int64_t S, const at::Tensor& key_mask,
                                  const at::Tensor& segment_ids, int64_t sliding_window, at::ScalarType dtype,
                                  c10::Device device = c10::Device(c10::kCPU));

// The default position ids of the contract: cumsum(mask) - 1 over the full [B, S + T] mask with pads at 0
// (GenerationMixin), last T columns; arange(S, S + T) without a mask; restarting at 0 in each segment when
// segment_ids [B, T] is given.
at::Tensor default_position_ids(const CausalLmInputs& inputs, int64_t S);

std::unique_ptr<CausalLM> load_llama(const std::string& dir, const CausalLmLoadOptions& options = {});

}  // namespace qlora::models
