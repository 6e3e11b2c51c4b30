// The T5 encoder-decoder family: T5 v1.0 (ReLU FFN, tied and rescaled lm_head; also ViT5), T5 v1.1 /
// Flan-T5 and mT5 (gated-GELU FFN, separate lm_head). The variants are flags of T5Config; see
// src/models/t5.cpp for the one table of tensor names. As whisper.cpp does, the forward pass is split
// into encode, cross-attention K/V precompute and decode steps, so that generation runs the encoder and
// the cross projections once and the decoder one token at a time over a self-attention KV cache.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "qlora/io/hf_config.h"
#include "qlora/nn/activation.h"
#include "qlora/nn/attention.h"
#include "qlora/nn/lora_linear.h"

namespace qlora::models {

struct T5Config {
  std::string model_type;  // "t5" or "mt5"
  int64_t vocab_size = 0;  // V
  int64_t d_model = 0;     // C
  int64_t d_kv = 0;        // D, head dim (not C / H in general)
  int64_t d_ff = 0;        // F, FFN width
  int64_t num_heads = 0;   // H
  int64_t num_layers = 0;  // encoder blocks
  int64_t num_decoder_layers = 0;
  int64_t relative_attention_num_buckets = 32;
  int64_t relative_attention_max_distance = 128;
  double layer_norm_epsilon = 1e-6;
  bool gated_act = false;  // "gated-gelu": wo(act(wi_0 x) * wi_1 x); else wo(act(wi x))
  nn::Activation dense_act = nn::Activation::kRelu;  // "gated-gelu" -> gelu_new (transformers' special case)
  std::string dense_act_fn = "relu";  // transformers' name: "gelu_new" is computed op by op as HF does
  bool scale_decoder_outputs = true;  // decoder output * d_model**-0.5 before lm_head
  double dropout_rate = 0.1;          // after embeddings, each sub-block and the final norm
  int64_t pad_token_id = 0;
  int64_t eos_token_id = 1;
  int64_t decoder_start_token_id = 0;  // shift_right's first token (= pad in every T5 checkpoint)
  // Not in config.json: how attention is computed (eager = the parity fixtures' form; set after load).
  nn::AttnImplementation attn_implementation = nn::AttnImplementation::kEager;

  // Reads config.json as transformers 5.17 does: feed_forward_proj "ACT" or "gated-ACT"; the lm input is
  // rescaled for model_type t5 unless tie_word_embeddings is false (or a saved scale_decoder_outputs
  // says otherwise), never for mt5. Errors name the file and key.
  static T5Config from_hf_config(const HfConfig& hf);
  int64_t inner_dim() const { return num_heads * d_kv; }  // H * D
};

struct T5Attention {
  nn::Linear q, k, v;  // [H*D, C], no bias
  nn::Linear o;        // [C, H*D]
};

struct T5FeedForward {    // DenseReluDense
  nn::Linear wi;          // [F, C]: not gated
  nn::Linear wi_0, wi_1;  // [F, C]: gated
  nn::Linear wo;          // [C, F]; kept in float32 by to(kHalf) (HF's _keep_in_fp32_modules)
};

struct T5Block {
  at::Tensor self_norm;  // layer.0.layer_norm [C]
  T5Attention self_attention;
  at::Tensor cross_norm;        // decoder: layer.1.layer_norm
  T5Attention cross_attention;  // decoder: layer.1.EncDecAttention
  at::Tensor ff_norm;           // layer.1 (encoder) / layer.2 (decoder) .layer_norm
  T5FeedForward ff;
};

struct T5Stack {
  std::vector<T5Block> blocks;
  at::Tensor relative_attention_bias;  // block.0.layer.0.SelfAttention.relative_attention_bias [buckets, H]
  at::Tensor final_norm;               // final_layer_norm [C]
};

struct T5Model {
  T5Config config;
  at::Tensor shared;  // [V, C] token embeddings of both stacks
  T5Stack encoder;
  T5Stack decoder;
  nn::Linear lm_head;  // [V, C]; its weight is `shared` itself when tied
  bool tied_lm_head = false;

  // HF module path -> projection, in HF's module order ("encoder.block.0.layer.0.SelfAttention.q", ...,
  // "lm_head"): what PEFT target matching and adapter keys see.
  std::vector<std::pair<std::string, nn::Linear*>> named_linears();
  // HF parameter name -> tensor, in HF's named_parameters() order; a tied lm_head is not listed twice.
  std::vector<std::pair<std::string, at::Tensor*>> named_parameters();
  // Casts the base tensors to `dtype` (adapters untouched) as from_pretrained(dtype=...) loads them:
  // for fp16 the FFN's wo stays float32 (_keep_in_fp32_modules; not applied for bf16).
  void to(at::ScalarType dtype);
  at::ScalarType dtype() const { return shared.scalar_type(); }
};

// One row of the table of names.
struct T5TensorInfo {
  std::string name;  // HF name, e.g. "decoder.block.1.layer.1.EncDecAttention.k.weight"
  std::vector<int64_t> shape;
  bool optional = false;  // lm_head.weight: absent means tied to shared.weight
};
std::vector<T5TensorInfo> t5_tensor_table(const T5Config& config);

struct T5LoadReport {
  std::vector<std::string> ignored;  // tied aliases (encoder/decoder.embed_tokens) and HF's ignored keys
  std::vector<std::string> unused;   // other checkpoint tensors not read (warned)
};

// Loads `dir`/config.json and its safetensors checkpoint (float32 stays float32). A missing tensor or a
// shape mismatch throws Error naming the checkpoint and the tensor; an embed_tokens alias that differs
// from shared.weight is an error. Call to(at::kBFloat16) for bf16 compute. Loading in fp16 logs a
// warning (T5 overflows in fp16; the hidden-state clamp HF applies is applied here too).
T5Model load_t5(const std::string& dir, T5LoadReport* report = nullptr);
T5Model load_t5(const T5Config& config, const std::string& checkpoint_path, T5LoadReport* report = nullptr);

// transformers' _relative_position_bucket: rel = key position - query position -> bucket in [0, buckets).
// Bidirectional (encoder) uses half the buckets per direction; the decoder only looks back.
at::Tensor relative_position_bucket(const at::Tensor& rel, bool bidirectional, int64_t num_buckets,
                                    int64_t max_distance);

// Encoder last hidden state [B, S, C] (after final_layer_norm). input_ids [B, S] int64; attention_mask
// [B, S] of 0/1, undefined = all ones.
at::Tensor encode(const T5Model& model, const at::Tensor& input_ids, const at::Tensor& attention_mask,
                  const nn::ForwardContext& ctx);

// Cross-attention keys and values of every decoder block, computed once per encoder output.
struct T5CrossKV {
  std::vector<at::Tensor> k, v;  // per decoder block: [B, H, S, D]
  // Rows picked / repeated, e.g. repeat_interleave for beams: rows [N] int64 into B.
  T5CrossKV index_rows(const at::Tensor& rows) const;
};
T5CrossKV precompute_cross_kv(const T5Model& model, const at::Tensor& encoder_hidden,
                              const nn::ForwardContext& ctx);

// Self-attention keys and values of the decoder tokens seen so far; empty before the first step.
struct T5KVCache {
  std::vector<at::Tensor> k, v;  // per decoder block: [B, H, T_past, D]
  int64_t length() const { return k.empty() ? 0 : k.front().size(2); }
  // Keeps rows `rows` [B'] int64, in that order (beam search reorders hypotheses every step).
  void reorder(const at::Tensor& rows);
};

// Decoder logits [B, T, V] for decoder_input_ids [B, T] following the `cache.length()` tokens already in
// `cache` (which is extended). T may be the whole target (teacher forcing) or one token per step.
// encoder_mask: [B, S] 0/1, undefined = all ones.
at::Tensor decode_step(const T5Model& model, const at::Tensor& decoder_input_ids, T5KVCache& cache,
                       const T5CrossKV& cross, const at::Tensor& encoder_mask, const nn::ForwardContext& ctx);

// HF _shift_right: decoder_start_token_id first, labels shifted right, -100 replaced by pad.
at::Tensor shift_right(const at::Tensor& labels, const T5Config& config);

struct Seq2SeqInputs {
  at::Tensor input_ids;          // [B, S]
  at::Tensor attention_mask;     // [B, S]; undefined = all ones
  at::Tensor labels;             // [B, T] with -100 ignored; undefined = no loss
  at::Tensor decoder_input_ids;  // [B, T]; undefined = shift_right(labels)
};
struct Seq2SeqOutput {
  at::Tensor logits;  // [B, T, V]
  at::Tensor loss;    // scalar mean cross-entropy over labels != -100; undefined without labels
};
// T5ForConditionalGeneration.forward.
Seq2SeqOutput seq2seq_forward(const T5Model& model, const Seq2SeqInputs& inputs,
                              const nn::ForwardContext& ctx);
// seq2seq_forward up to the decoder's final norm and dropout: [B, T, C], the input of output_head.
// Training losses run the head on chunks of it (nn/lm_loss.h), so that [B, T, V] never exists.
at::Tensor seq2seq_hidden_states(const T5Model& model, const Seq2SeqInputs& inputs,
                                 const nn::ForwardContext& ctx);
// The output head: hidden [..., C] -> logits [..., V]: lm_head (with its LoRA) after the d_model**-0.5
// rescale of scale_decoder_outputs.
at::Tensor output_head(const T5Model& model, const at::Tensor& hidden, const nn::ForwardContext& ctx);

}  // namespace qlora::models
