// Rotary position embeddings as transformers computes them (modeling_rope_utils.py and
// LlamaRotaryEmbedding): inverse frequencies per rope_type, cos/sin tables in fp32 from position ids,
// and the half-split ("NeoX") rotation. Shared by every RoPE decoder (LLaMA, Mistral, Qwen2).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace qlora::nn {

enum class RopeType {
  kDefault,  // inv_freq = 1 / theta^(2i / dim)
  kLinear,   // inv_freq / factor
  kDynamic,  // NTK: theta grows with the sequence once it passes max_position_embeddings
  kLlama3,   // Llama 3.1: long wavelengths / factor, short kept, a smooth ramp between
};

// The rope parameters of a config (config.json "rope_parameters", or the legacy "rope_scaling" +
// "rope_theta"); the model file fills it.
struct RopeConfig {
  RopeType type = RopeType::kDefault;
  int64_t dim = 0;                               // rotated width: head_dim (partial rotary is not modelled)
  double theta = 10000.0;                        // rope_theta
  double factor = 1.0;                           // linear / dynamic / llama3
  double low_freq_factor = 1.0;                  // llama3
  double high_freq_factor = 4.0;                 // llama3
  int64_t original_max_position_embeddings = 0;  // llama3 (defaults to max_position_embeddings)
  int64_t max_position_embeddings = 0;           // dynamic: the length past which theta is rescaled
};

// "default", "linear", "dynamic", "llama3"; throws Error naming `where` otherwise.
RopeType parse_rope_type(const std::string& name, const std::string& where);

// Inverse frequencies [dim / 2] float32. `seq_len` only matters for kDynamic (max position + 1 of the
// positions being embedded), as transformers' dynamic_rope_update recomputes them per forward.
at::Tensor rope_inv_freq(const RopeConfig& config, int64_t seq_len);

struct RopeTables {
  at::Tensor cos;  // [B, T, dim] in the requested dtype
  at::Tensor sin;
};

// cos / sin of positions [B, T] (int64): freqs = inv_freq (x) positions in fp32, emb = cat(freqs, freqs),
// then cast to `dtype` (attention_scaling is 1 for every supported type).
RopeTables rope_tables(const RopeConfig& config, const at::Tensor& position_ids, at::ScalarType dtype);

// x * cos + rotate_half(x) * sin with rotate_half(x) = cat(-x[D/2:], x[:D/2]).
// x: [B, H, T, D]; tables [B, T, D] -> [B, H, T, D].
at::Tensor apply_rope(const at::Tensor& x, const RopeTables& tables);

}  // namespace qlora::nn
