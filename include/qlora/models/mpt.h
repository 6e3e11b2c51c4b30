// MPT decoders as MosaicML's llm-foundry defines them (llmfoundry/models/mpt/modeling_mpt.py, the remote
// code PhoGPT-4B ships) and as transformers' MptForCausalLM runs the subset it supports (no biases, FFN 4x).
// ALiBi instead of positions, a fused Wqkv, pre-LN blocks with LayerNorm, a GELU MLP. The options are flags
// of MptConfig on one forward; see src/models/mpt.cpp for the one table of tensor names. Used through
// models::CausalLM (load_causal_lm, config.json "model_type": "mpt").
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "qlora/io/hf_config.h"
#include "qlora/models/causal_lm.h"
#include "qlora/nn/activation.h"

namespace qlora::models {

struct MptConfig {
  int64_t vocab_size = 0;
  int64_t d_model = 0;     // C
  int64_t n_heads = 0;     // H; head dim D = C / H
  int64_t kv_n_heads = 0;  // Hkv: H (multihead), 1 (multiquery) or attn_config.kv_n_heads (grouped_query)
  int64_t n_layers = 0;
  int64_t ffn_hidden_size = 0;  // ffn_config.ffn_hidden_size, else d_model * expansion_ratio
  int64_t max_seq_len = 0;      // size of the ALiBi table and of wpe
  bool alibi = false;           // attn_config.alibi (llm-foundry default false; PhoGPT and HF MPT: true)
  double alibi_bias_max = 8;
  std::optional<double> clip_qkv;                     // qkv clamped to [-clip, clip] when set
  double softmax_scale = 0;                           // attn_config.softmax_scale, else 1 / sqrt(C / H)
  bool bias = true;                                   // !no_bias: Linear and LayerNorm biases
  bool learned_pos_emb = false;                       // transformer.wpe [max_seq_len, C]
  bool tie_word_embeddings = true;                    // false: a separate lm_head [V, C]
  std::optional<double> logit_scale;                  // logits multiplier ("inv_sqrt_d_model" = 1 / sqrt(C))
  double layer_norm_eps = 1e-5;                       // LPLayerNorm's fixed eps (HF MPT: layer_norm_epsilon)
  nn::Activation ffn_act = nn::Activation::kGeluErf;  // ffn_config.ffn_act_fn, default gelu 'none'
  bool attn_uses_sequence_id = false;                 // recorded; segment_ids are honoured either way
  double attn_pdrop = 0, resid_pdrop = 0, emb_pdrop = 0;  // dropouts in training
  // config.json written for transformers' MptForCausalLM (no auto_map, architectures not "MPTForCausalLM"):
  // its semantics, which ignore no_bias, learned_pos_emb, alibi_bias_max, expansion_ratio, logit_scale.
  bool transformers_code = false;

  // Reads config.json as the code it was written for reads it: transformers' MptForCausalLM, or
  // llm-foundry's (nested attn_config / ffn_config, with MPTConfig's defaults for missing keys). Unsupported
  // options (rope, qk_ln, qk_gn, prefix_lm, sliding windows, ffn types other than mptmlp, rms norms,
  // embedding_fraction != 1) are errors naming config.json and the key.
  static MptConfig from_hf_config(const HfConfig& hf);
  int64_t head_dim() const { return d_model / n_heads; }
};

// llm-foundry gen_slopes: N = 2^ceil(log2 H), slopes 2^-(i * max / N) for i = 1..N, and for H not a
// power of two the odd-indexed slopes first, then the even ones, first H kept. float32 [H].
at::Tensor mpt_alibi_slopes(int64_t n_heads, double alibi_bias_max);

// build_alibi_bias (causal): arange(1 - L, 1) * slope as float32 [1, H, 1, L]. MPT builds it once at
// max_seq_len and slices the LAST s_k columns, so key j of s_k gets slope * (j - (s_k - 1)).
at::Tensor mpt_alibi_bias(int64_t n_heads, int64_t length, double alibi_bias_max);

std::unique_ptr<CausalLM> load_mpt(const std::string& dir, const CausalLmLoadOptions& options = {});

}  // namespace qlora::models
