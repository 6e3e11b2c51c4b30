// The contract every decoder-only model family keeps (LLaMA / Mistral / Qwen2 in llama.cpp, MPT /
// PhoGPT in mpt.cpp): config from config.json, one table of HF tensor names, forward with an optional
// KV cache. Generation (src/infer), SFT training (src/tasks), PEFT adapters (src/peft) and merged
// export see decoders only through this interface.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qlora/nn/attention.h"
#include "qlora/nn/lora_linear.h"

namespace qlora::models {

// Keys and values of every layer for the tokens seen so far. A model fills it on its first forward
// and appends on each later one. Layout per layer: [B, Hkv, S, D] in the model's dtype (before any
// GQA repeat), S = length().
struct KvCache {
  std::vector<at::Tensor> keys;    // one per layer; empty before the first forward
  std::vector<at::Tensor> values;  // one per layer
  int64_t length() const { return keys.empty() || !keys[0].defined() ? 0 : keys[0].size(2); }
  bool empty() const { return length() == 0; }
  // Keeps only the batch rows `rows` (int64 [B']), e.g. to drop finished sequences or reorder beams.
  void select_rows(const at::Tensor& rows);
};

struct CausalLmInputs {
  at::Tensor input_ids;  // [B, T] int64: the new tokens (all of the prompt, or one per decode step)
  // [B, S + T] 1 = real token, 0 = padding, covering the cached tokens and the new ones (HF's
  // attention_mask during generate). Undefined = all ones. Left padding is how batches are padded
  // for generation; right padding for training.
  at::Tensor attention_mask;
  // [B, T] int64 positions of the new tokens (RoPE). Undefined = HF's default: cumsum(mask) - 1 over
  // the full mask (so left padding does not shift positions; pads get 0, as transformers 5.17's
  // generate), taking the last T; without a mask, arange(S, S + T).
  at::Tensor position_ids;
  // [B, T] int64, training only (no cache): packed samples. Tokens attend only to earlier tokens with
  // the same segment id, and position ids restart at 0 in each segment unless position_ids is given.
  // Undefined = one segment per row.
  at::Tensor segment_ids;
};

struct CausalLmOutput {
  at::Tensor logits;  // [B, T, V] (float32 when the model computes in fp32; the model's dtype otherwise)
};

// The tensors of a model: canonical name == the HF state-dict name of the *ForCausalLM model
// ("model.layers.0.self_attn.q_proj.weight", "transformer.blocks.0.attn.Wqkv.weight"), so loading,
// saving, adapters (PEFT keys) and merged exports agree by construction.
struct CausalLmTensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  bool optional = false;  // may be absent (e.g. lm_head.weight when embeddings are tied)
};

class CausalLM {
 public:
  virtual ~CausalLM() = default;

  // "llama", "mistral", "qwen2", "mpt".
  virtual std::string model_type() const = 0;
  // The HF class name PEFT records ("LlamaForCausalLM", "MptForCausalLM"...).
  virtual std::string hf_class_name() const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t num_layers() const = 0;
  // Longest sequence the config allows (max_position_embeddings / max_seq_len); -1 = unbounded.
  virtual int64_t max_sequence_length() const = 0;

  // Runs the new tokens; with `cache` non-null, attends to the cached tokens first and appends the
  // new keys/values to it. ctx.training enables dropout (when the config has any).
  // = output_head(hidden_states(...)).
  CausalLmOutput forward(const CausalLmInputs& inputs, KvCache* cache, const nn::ForwardContext& ctx) {
    return {output_head(hidden_states(inputs, cache, ctx), ctx)};
  }
  // forward without the output head: the final hidden states [B, T, C] (after the last norm), in the
  // model's dtype. Training losses run the head on chunks of them (nn/lm_loss.h) so that the [B, T, V]
  // logits never exist.
  virtual at::Tensor hidden_states(const CausalLmInputs& inputs, KvCache* cache,
                                   const nn::ForwardContext& ctx) = 0;
  // The output head: hidden [..., C] -> logits [..., V] (lm_head with its LoRA; MPT's tied head and
  // logit_scale). Depends on nothing but `hidden` and the weights, so it may be rerun in backward.
  virtual at::Tensor output_head(const at::Tensor& hidden, const nn::ForwardContext& ctx) = 0;

  // HF module path -> projection, model order ("model.layers.0.self_attn.q_proj", "lm_head"), for
  // PEFT target matching, adapter keys and merging.
  virtual std::vector<std::pair<std::string, nn::Linear*>> named_linears() = 0;
  // HF parameter name -> base tensor, every one (linears' weights and biases included). A tied
  // lm_head is not listed separately.
  virtual std::vector<std::pair<std::string, at::Tensor*>> named_parameters() = 0;
  // The tensor table of this config.
  virtual std::vector<CausalLmTensorInfo> tensor_table() const = 0;
  // The config.json this model was loaded from (written unchanged into merged exports).
  virtual const std::string& config_json() const = 0;

  // Casts every base tensor (not the adapters) to `dtype`.
  virtual void to(at::ScalarType dtype) = 0;
  virtual at::ScalarType dtype() const = 0;

  // How forward computes attention (nn/attention.h); eager and sdpa agree up to summation order.
  virtual void set_attn_implementation(nn::AttnImplementation impl) = 0;
  virtual nn::AttnImplementation attn_implementation() const = 0;
};

struct CausalLmLoadOptions {
  at::ScalarType dtype = at::kFloat;  // compute/storage dtype of the base weights after loading
  // eager: transformers' reference form (the parity fixtures'); the run config, infer and eval pick sdpa.
  nn::AttnImplementation attn_implementation = nn::AttnImplementation::kEager;
};

// Loads config.json + the (sharded) safetensors checkpoint of `dir`, choosing the family from
// config.json "model_type". Errors name the file and the key / tensor.
std::unique_ptr<CausalLM> load_causal_lm(const std::string& dir, const CausalLmLoadOptions& options = {});

}  // namespace qlora::models
