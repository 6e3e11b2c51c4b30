// The parameter layout of a checkpoint computed from its config.json alone (no weights): every linear
// projection by HF module path with its shape, plus the other parameters by name. `qlora train
// --dry-run` budgets memory from it before anything is loaded; tests check it against the tensor
// tables of the loaded models so the two cannot drift apart.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qlora/io/hf_config.h"

namespace qlora::models {

struct LinearShape {
  std::string module;  // HF module path: "model.layers.0.self_attn.q_proj"
  int64_t in = 0;
  int64_t out = 0;
  bool bias = false;
};

struct ParamShape {
  std::string name;  // HF parameter name: "model.embed_tokens.weight"
  int64_t numel = 0;
};

struct ModelShape {
  std::string family;                   // "llama", "mpt", "t5", "encoder"
  std::vector<LinearShape> linears;     // model order
  std::vector<ParamShape> others;       // embeddings, norms, position tables (not linears)
  std::string output_embeddings;        // "lm_head" (generative) or "" ; a tied head is not in `linears`
  bool tied_output = false;             // the head reuses the input embedding
  std::vector<std::string> keep_dense;  // never quantized by transformers (T5's "wo"), as in PeftModelView
  int64_t num_layers = 0;               // decoder layers (encoder + decoder for T5)
  int64_t hidden = 0;                   // C
  int64_t heads = 0;                    // H
  int64_t kv_heads = 0;                 // Hkv
  int64_t head_dim = 0;                 // D
  int64_t intermediate = 0;             // FFN width
  int64_t vocab = 0;                    // V
  bool gated_mlp = false;               // SwiGLU / gated-GELU (three FFN matrices)

  int64_t linear_params() const;  // weights + biases of `linears`
  int64_t other_params() const;
  int64_t total_params() const { return linear_params() + other_params(); }
};

// From config.json (a folder or the file). Families: llama, mistral, qwen2, mpt, t5, mt5, xlm-roberta,
// roberta, bert (the QA-head model's names). Throws Error naming the file for other model types.
ModelShape model_shape(const HfConfig& config);

}  // namespace qlora::models
