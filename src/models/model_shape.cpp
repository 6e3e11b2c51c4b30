#include "qlora/models/model_shape.h"

#include "qlora/core/error.h"

namespace qlora::models {

int64_t ModelShape::linear_params() const {
  int64_t n = 0;
  for (const auto& l : linears) n += l.in * l.out + (l.bias ? l.out : 0);
  return n;
}

int64_t ModelShape::other_params() const {
  int64_t n = 0;
  for (const auto& p : others) n += p.numel;
  return n;
}

namespace {

// LLaMA / Mistral / Qwen2 (transformers modeling_llama / modeling_qwen2 names).
ModelShape llama_shape(const HfConfig& c) {
  ModelShape s;
  s.family = "llama";
  const std::string type = c.model_type();
  s.hidden = c.get_int("hidden_size");
  s.heads = c.get_int("num_attention_heads");
  s.kv_heads = c.get_int("num_key_value_heads", s.heads);
  s.head_dim = c.get_int("head_dim", s.hidden / s.heads);
  s.intermediate = c.get_int("intermediate_size");
  s.vocab = c.get_int("vocab_size");
  s.num_layers = c.get_int("num_hidden_layers");
  s.gated_mlp = true;
  s.tied_output = c.get_bool("tie_word_embeddings", false);  // LlamaConfig and Qwen2Config default
  const bool qkv_bias = type == "qwen2" ? true : c.get_bool("attention_bias", false);
  const bool o_bias = type == "qwen2" ? false : c.get_bool("attention_bias", false);
  const bool mlp_bias = c.get_bool("mlp_bias", false);
  const int64_t C = s.hidden, Q = s.heads * s.head_dim, KV = s.kv_heads * s.head_dim, I = s.intermediate;
  s.others.push_back({"model.embed_tokens.weight", s.vocab * C});
  for (int64_t i = 0; i < s.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    s.linears.push_back({p + "self_attn.q_proj", C, Q, qkv_bias});
    s.linears.push_back({p + "self_attn.k_proj", C, KV, qkv_bias});
    s.linears.push_back({p + "self_attn.v_proj", C, KV, qkv_bias});
    s.linears.push_back({p + "self_attn.o_proj", Q, C, o_bias});
    s.linears.push_back({p + "mlp.gate_proj", C, I, mlp_bias});
    s.linears.push_back({p + "mlp.up_proj", C, I, mlp_bias});
    s.linears.push_back({p + "mlp.down_proj", I, C, mlp_bias});
    s.others.push_back({p + "input_layernorm.weight", C});
    s.others.push_back({p + "post_attention_layernorm.weight", C});
  }
  s.others.push_back({"model.norm.weight", C});
  s.output_embeddings = "lm_head";
  if (!s.tied_output) s.linears.push_back({"lm_head", C, s.vocab, false});
  return s;
}

// MPT as llm-foundry builds it (PhoGPT): fused Wqkv, biases unless no_bias, tied unembedding by default.
ModelShape mpt_shape(const HfConfig& c) {
  ModelShape s;
  s.family = "mpt";
  s.hidden = c.get_int("d_model");
  s.heads = c.get_int("n_heads");
  s.head_dim = s.hidden / s.heads;
  s.kv_heads = s.heads;
  if (c.has("attn_config")) s.kv_heads = c.sub("attn_config").get_int("kv_n_heads", s.heads);
  s.intermediate = static_cast<int64_t>(c.get_float("expansion_ratio", 4.0) * s.hidden);
  s.vocab = c.get_int("vocab_size");
  s.num_layers = c.get_int("n_layers");
  s.tied_output = c.get_bool("tie_word_embeddings", true);
  const bool bias = !c.get_bool("no_bias", false);
  const int64_t C = s.hidden, KV = s.kv_heads * s.head_dim, I = s.intermediate;
  const int64_t norm = bias ? 2 * C : C;
  s.others.push_back({"transformer.wte.weight", s.vocab * C});
  if (c.get_bool("learned_pos_emb", true) &&
      !(c.has("attn_config") && c.sub("attn_config").get_bool("alibi", false)))
    s.others.push_back({"transformer.wpe.weight", c.get_int("max_seq_len", 2048) * C});
  for (int64_t i = 0; i < s.num_layers; ++i) {
    const std::string p = "transformer.blocks." + std::to_string(i) + ".";
    s.others.push_back({p + "norm_1", norm});
    s.linears.push_back({p + "attn.Wqkv", C, C + 2 * KV, bias});
    s.linears.push_back({p + "attn.out_proj", C, C, bias});
    s.others.push_back({p + "norm_2", norm});
    s.linears.push_back({p + "ffn.up_proj", C, I, bias});
    s.linears.push_back({p + "ffn.down_proj", I, C, bias});
  }
  s.others.push_back({"transformer.norm_f", norm});
  s.output_embeddings = "lm_head";
  if (!s.tied_output) s.linears.push_back({"lm_head", C, s.vocab, false});
  return s;
}

// T5 / mT5 (transformers modeling_t5 names).
ModelShape t5_shape(const HfConfig& c) {
  ModelShape s;
  s.family = "t5";
  s.hidden = c.get_int("d_model");
  s.heads = c.get_int("num_heads");
  s.kv_heads = s.heads;
  s.head_dim = c.get_int("d_kv");
  s.intermediate = c.get_int("d_ff");
  s.vocab = c.get_int("vocab_size");
  const int64_t enc_layers = c.get_int("num_layers");
  const int64_t dec_layers = c.get_int("num_decoder_layers", enc_layers);
  s.num_layers = enc_layers + dec_layers;
  const std::string ff = c.get_string("feed_forward_proj", "relu");
  s.gated_mlp = ff.rfind("gated-", 0) == 0;
  s.tied_output = c.get_bool("tie_word_embeddings", true);
  const int64_t C = s.hidden, A = s.heads * s.head_dim, F = s.intermediate;
  const int64_t buckets = c.get_int("relative_attention_num_buckets", 32);
  s.others.push_back({"shared.weight", s.vocab * C});
  auto attention = [&](const std::string& p) {
    for (const char* n : {"q", "k", "v"}) s.linears.push_back({p + n, C, A, false});
    s.linears.push_back({p + "o", A, C, false});
  };
  auto feed_forward = [&](const std::string& p) {
    if (s.gated_mlp) {
      s.linears.push_back({p + "wi_0", C, F, false});
      s.linears.push_back({p + "wi_1", C, F, false});
    } else {
      s.linears.push_back({p + "wi", C, F, false});
    }
    s.linears.push_back({p + "wo", F, C, false});
  };
  for (const std::string stack : {"encoder", "decoder"}) {
    const int64_t n = stack == "encoder" ? enc_layers : dec_layers;
    for (int64_t i = 0; i < n; ++i) {
      const std::string p = stack + ".block." + std::to_string(i) + ".layer.";
      attention(p + "0.SelfAttention.");
      if (i == 0)
        s.others.push_back({p + "0.SelfAttention.relative_attention_bias.weight", buckets * s.heads});
      s.others.push_back({p + "0.layer_norm.weight", C});
      int64_t next = 1;
      if (stack == "decoder") {
        attention(p + "1.EncDecAttention.");
        s.others.push_back({p + "1.layer_norm.weight", C});
        next = 2;
      }
      feed_forward(p + std::to_string(next) + ".DenseReluDense.");
      s.others.push_back({p + std::to_string(next) + ".layer_norm.weight", C});
    }
    s.others.push_back({stack + ".final_layer_norm.weight", C});
  }
  s.output_embeddings = "lm_head";
  s.keep_dense = {"wo"};
  if (!s.tied_output) s.linears.push_back({"lm_head", C, s.vocab, false});
  return s;
}

// XLM-R / RoBERTa / BERT with the extractive-QA head (the encoder issue's model).
ModelShape encoder_shape(const HfConfig& c) {
  ModelShape s;
  s.family = "encoder";
  const std::string prefix = c.model_type() == "bert" ? "bert." : "roberta.";
  s.hidden = c.get_int("hidden_size");
  s.heads = c.get_int("num_attention_heads");
  s.kv_heads = s.heads;
  s.head_dim = s.hidden / s.heads;
  s.intermediate = c.get_int("intermediate_size");
  s.vocab = c.get_int("vocab_size");
  s.num_layers = c.get_int("num_hidden_layers");
  const int64_t C = s.hidden, I = s.intermediate;
  s.linears.push_back({"qa_outputs", C, 2, true});  // listed first, as the loaded model's view does
  s.others.push_back({prefix + "embeddings.word_embeddings.weight", s.vocab * C});
  s.others.push_back(
      {prefix + "embeddings.position_embeddings.weight", c.get_int("max_position_embeddings") * C});
  s.others.push_back(
      {prefix + "embeddings.token_type_embeddings.weight", c.get_int("type_vocab_size", 1) * C});
  s.others.push_back({prefix + "embeddings.LayerNorm", 2 * C});
  for (int64_t i = 0; i < s.num_layers; ++i) {
    const std::string p = prefix + "encoder.layer." + std::to_string(i) + ".";
    s.linears.push_back({p + "attention.self.query", C, C, true});
    s.linears.push_back({p + "attention.self.key", C, C, true});
    s.linears.push_back({p + "attention.self.value", C, C, true});
    s.linears.push_back({p + "attention.output.dense", C, C, true});
    s.others.push_back({p + "attention.output.LayerNorm", 2 * C});
    s.linears.push_back({p + "intermediate.dense", C, I, true});
    s.linears.push_back({p + "output.dense", I, C, true});
    s.others.push_back({p + "output.LayerNorm", 2 * C});
  }
  return s;
}

}  // namespace

ModelShape model_shape(const HfConfig& config) {
  const std::string type = config.model_type();
  if (type == "llama" || type == "mistral" || type == "qwen2") return llama_shape(config);
  if (type == "mpt") return mpt_shape(config);
  if (type == "t5" || type == "mt5") return t5_shape(config);
  if (type == "xlm-roberta" || type == "roberta" || type == "bert") return encoder_shape(config);
  fail(config.source() + ": model_type '" + type + "' has no known parameter layout");
}

}  // namespace qlora::models
