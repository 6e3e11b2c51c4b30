// LLaMA / Mistral / Qwen2 decoders (transformers modeling_llama.py, modeling_mistral.py,
// modeling_qwen2.py), attention in their eager form or through SDPA with the same additive mask
// (causal, padding, sliding window, segments: finfo.min, so a left pad's query row, which allows no
// key, is uniform under both, never NaN). The three differ only by LlamaConfig flags: projection
// biases, tied embeddings and the sliding window.
#include "qlora/models/llama.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "decoder_families.h"
#include "qlora/core/error.h"
#include "qlora/core/log.h"
#include "qlora/io/checkpoint.h"
#include "qlora/models/quantize.h"
#include "qlora/nn/attention.h"
#include "qlora/nn/checkpoint.h"

namespace qlora::models {
namespace {

struct LlamaLayer {
  nn::Linear q_proj, k_proj, v_proj, o_proj;  // [H*D, C], [Hkv*D, C], [Hkv*D, C], [C, H*D]
  nn::Linear gate_proj, up_proj, down_proj;   // [I, C], [I, C], [C, I]
  at::Tensor input_layernorm;                 // [C]
  at::Tensor post_attention_layernorm;        // [C]
};

// One module of the table: where its weight (and bias) live, and its shape.
struct ModuleSlot {
  std::string module;  // HF module path
  at::Tensor* weight = nullptr;
  at::Tensor* bias = nullptr;  // nullptr: no bias in this config
  nn::Linear* linear = nullptr;
  std::vector<int64_t> weight_shape;
  bool optional = false;
};

// The RoPE section of config.json: transformers 5 writes "rope_parameters" (with rope_theta inside);
// older files have "rope_scaling" (null when unscaled) beside a top-level "rope_theta".
nn::RopeConfig parse_rope(const HfConfig& hf, int64_t head_dim, int64_t max_positions) {
  nn::RopeConfig r;
  r.dim = head_dim;
  r.max_position_embeddings = max_positions;
  r.original_max_position_embeddings = max_positions;
  r.theta = hf.get_float("rope_theta", 10000.0);
  const char* key = hf.has("rope_parameters") ? "rope_parameters"
                    : hf.has("rope_scaling")  ? "rope_scaling"
                                              : nullptr;
  if (key == nullptr) return r;
  const HfConfig p = hf.sub(key);
  r.theta = p.get_float("rope_theta", r.theta);
  if (p.has("partial_rotary_factor") && p.get_float("partial_rotary_factor") != 1.0) {
    fail(p.source() + ": partial_rotary_factor != 1 is not supported");
  }
  const std::string type = p.get_string("rope_type", p.get_string("type", "default"));
  r.type = nn::parse_rope_type(type, p.source());
  if (r.type == nn::RopeType::kDefault) return r;
  r.factor = p.get_float("factor");
  if (r.type == nn::RopeType::kLlama3) {
    r.low_freq_factor = p.get_float("low_freq_factor");
    r.high_freq_factor = p.get_float("high_freq_factor");
    r.original_max_position_embeddings = p.get_int("original_max_position_embeddings", max_positions);
  }
  return r;
}

class LlamaModel final : public CausalLM {
 public:
  LlamaModel(LlamaConfig config, std::string config_json)
      : c_(std::move(config)), json_(std::move(config_json)) {
    layers_.resize(static_cast<size_t>(c_.num_layers));
  }

  std::string model_type() const override { return c_.model_type; }
  std::string hf_class_name() const override { return c_.hf_class_name; }
  int64_t vocab_size() const override { return c_.vocab_size; }
  int64_t num_layers() const override { return c_.num_layers; }
  int64_t max_sequence_length() const override {
    // Dynamic NTK scaling exists to run past max_position_embeddings.
    return c_.rope.type == nn::RopeType::kDynamic ? -1 : c_.max_position_embeddings;
  }
  const std::string& config_json() const override { return json_; }
  at::ScalarType dtype() const override { return embed_tokens_.scalar_type(); }
  void set_attn_implementation(nn::AttnImplementation impl) override { attn_ = impl; }
  nn::AttnImplementation attn_implementation() const override { return attn_; }

  // THE table of names, in HF module order (named_parameters order of *ForCausalLM).
  std::vector<ModuleSlot> module_table() {
    const int64_t C = c_.hidden_size, I = c_.intermediate_size, D = c_.head_dim;
    const int64_t H = c_.num_heads, Hkv = c_.num_kv_heads;
    std::vector<ModuleSlot> t;
    auto linear = [&](std::string name, nn::Linear& l, int64_t out, int64_t in, bool bias) {
      t.push_back({std::move(name), &l.base.weight, bias ? &l.base.bias : nullptr, &l, {out, in}, false});
    };
    auto vector = [&](std::string name, at::Tensor& w) {
      t.push_back({std::move(name), &w, nullptr, nullptr, {C}, false});
    };
    t.push_back({"model.embed_tokens", &embed_tokens_, nullptr, nullptr, {c_.vocab_size, C}, false});
    for (size_t i = 0; i < layers_.size(); ++i) {
      LlamaLayer& L = layers_[i];
      const std::string p = "model.layers." + std::to_string(i) + ".";
      linear(p + "self_attn.q_proj", L.q_proj, H * D, C, c_.qkv_bias);
      linear(p + "self_attn.k_proj", L.k_proj, Hkv * D, C, c_.qkv_bias);
      linear(p + "self_attn.v_proj", L.v_proj, Hkv * D, C, c_.qkv_bias);
      linear(p + "self_attn.o_proj", L.o_proj, C, H * D, c_.o_bias);
      linear(p + "mlp.gate_proj", L.gate_proj, I, C, c_.mlp_bias);
      linear(p + "mlp.up_proj", L.up_proj, I, C, c_.mlp_bias);
      linear(p + "mlp.down_proj", L.down_proj, C, I, c_.mlp_bias);
      vector(p + "input_layernorm", L.input_layernorm);
      vector(p + "post_attention_layernorm", L.post_attention_layernorm);
    }
    vector("model.norm", norm_);
    // Tied: HF's state dict may omit lm_head.weight (save_pretrained does); it is embed_tokens either way.
    linear("lm_head", lm_head_, c_.vocab_size, C, false);
    t.back().optional = c_.tie_word_embeddings;
    return t;
  }

  void load(const std::string& dir, at::ScalarType dtype) {
    const Checkpoint ckpt = open_checkpoint(dir);
    for (const ModuleSlot& s : module_table()) {
      auto read = [&](const std::string& name, const std::vector<int64_t>& shape, at::Tensor& slot) {
        slot =
            ckpt.tensor(name, shape).to(dtype).clone();  // own the memory rather than alias the file mapping
      };
      if (s.optional) continue;  // the tied lm_head
      if (!ckpt.contains(s.module + ".weight")) {
        // transformers would initialise a missing untied head at random; that is never what a user wants.
        const std::string why = s.module == "lm_head"
                                    ? " (config.json: tie_word_embeddings is false or unset, "
                                      "and transformers' default for " +
                                          c_.model_type + " is untied)"
                                    : "";
        fail(ckpt.path() + ": missing tensor '" + s.module + ".weight'" + why);
      }
      if (s.linear == nullptr || !read_prequantized(ckpt, s.module, s.weight_shape, dtype, s.linear->base))
        read(s.module + ".weight", s.weight_shape, *s.weight);
      if (s.bias != nullptr) {
        if (!ckpt.contains(s.module + ".bias")) {
          fail(ckpt.path() + ": missing tensor '" + s.module + ".bias' (the config enables this bias)");
        }
        read(s.module + ".bias", {s.weight_shape[0]}, *s.bias);
      }
    }
    if (c_.tie_word_embeddings) tie_or_keep_stored_head(ckpt, dtype);
    // Old LLaMA checkpoints store the RoPE buffer; transformers ignores it too.
    ckpt.warn_unread({"rotary_emb.inv_freq"});
  }

  // transformers 5.17 ties lm_head to embed_tokens unless the checkpoint stores an lm_head.weight that
  // differs: then it warns and keeps the stored head untied. We do the same, so that the head is the one
  // transformers computes with.
  void tie_or_keep_stored_head(const Checkpoint& ckpt, at::ScalarType dtype) {
    const std::string name = "lm_head.weight";
    if (ckpt.contains(name)) {
      at::Tensor stored = ckpt.tensor(name, {c_.vocab_size, c_.hidden_size});
      if (!at::equal(stored.to(embed_tokens_.scalar_type()), embed_tokens_)) {
        log::warn(
            ckpt.path() + ": config.json says tie_word_embeddings but the checkpoint's '" + name +
            "' differs from model.embed_tokens.weight; using the stored head untied, as transformers does");
        c_.tie_word_embeddings = false;
        lm_head_.base.weight = stored.to(dtype).clone();
        return;
      }
    }
    lm_head_.base.weight = embed_tokens_;
  }

  std::vector<std::pair<std::string, nn::Linear*>> named_linears() override {
    std::vector<std::pair<std::string, nn::Linear*>> out;
    for (const ModuleSlot& s : module_table()) {
      if (s.linear != nullptr) out.emplace_back(s.module, s.linear);
    }
    return out;
  }

  std::vector<std::pair<std::string, at::Tensor*>> named_parameters() override {
    std::vector<std::pair<std::string, at::Tensor*>> out;
    for (const ModuleSlot& s : module_table()) {
      if (s.optional) continue;  // a tied lm_head shares embed_tokens
      out.emplace_back(s.module + ".weight", s.weight);
      if (s.bias != nullptr) out.emplace_back(s.module + ".bias", s.bias);
    }
    return out;
  }

  std::vector<CausalLmTensorInfo> tensor_table() const override {
    LlamaModel shape_only(c_, "");
    std::vector<CausalLmTensorInfo> out;
    for (const ModuleSlot& s : shape_only.module_table()) {
      out.push_back({s.module + ".weight", s.weight_shape, s.optional});
      if (s.bias != nullptr) out.push_back({s.module + ".bias", {s.weight_shape[0]}, s.optional});
    }
    return out;
  }

  void to(at::ScalarType dtype) override {
    cast_parameters(named_parameters(), dtype);
    if (c_.tie_word_embeddings) lm_head_.base.weight = embed_tokens_;
  }

  at::Tensor hidden_states(const CausalLmInputs& in, KvCache* cache, const nn::ForwardContext& ctx) override {
    const at::Tensor& ids = in.input_ids;  // [B, T]
    if (!ids.defined() || ids.dim() != 2) fail(c_.model_type + " forward: input_ids must be [B, T]");
    const int64_t B = ids.size(0), T = ids.size(1);
    const int64_t S = cache != nullptr ? cache->length() : 0;
    if (in.segment_ids.defined() && S != 0)
      fail(c_.model_type + " forward: segment_ids cannot be used with a cache");
    if (in.attention_mask.defined() && (in.attention_mask.dim() != 2 || in.attention_mask.size(0) != B ||
                                        in.attention_mask.size(1) != S + T)) {
      fail(c_.model_type + " forward: attention_mask must be [B, S + T] = [" + std::to_string(B) + ", " +
           std::to_string(S + T) + "], got " + shape_string(in.attention_mask.sizes()));
    }
    if (cache != nullptr && cache->keys.empty()) {
      cache->keys.resize(layers_.size());
      cache->values.resize(layers_.size());
    }
    const at::Tensor positions = in.position_ids.defined() ? in.position_ids : default_position_ids(in, S);
    const at::ScalarType dt = dtype();
    const nn::RopeTables rope = nn::rope_tables(c_.rope, positions, dt);
    const at::Tensor full_bias =
        decoder_attention_bias(B, T, S, in.attention_mask, in.segment_ids, 0, dt, ids.device());
    at::Tensor window_bias;
    if (c_.sliding_window > 0) {
      window_bias = decoder_attention_bias(B, T, S, in.attention_mask, in.segment_ids, c_.sliding_window, dt,
                                           ids.device());
    }
    const int64_t groups = c_.num_heads / c_.num_kv_heads;
    const double dropout_p = ctx.training ? c_.attention_dropout : 0.0;
    const bool sdpa = nn::use_sdpa(attn_, dropout_p, ctx);

    // Checkpointing only while training under grad mode (checkpoint_block checks the latter), never with
    // a cache: the recompute would write the cache twice.
    const bool checkpointing = ctx.gradient_checkpointing && ctx.training && cache == nullptr;
    at::Tensor x = at::embedding(embed_tokens_, ids);  // [B, T, C]
    for (size_t i = 0; i < layers_.size(); ++i) {
      // One decoder layer x [B, T, C] -> [B, T, C]. Captured tensors (rope tables, masks) derive from
      // the inputs and need no gradient; they are captured by value, the recompute runs after forward.
      const at::Tensor& bias = c_.sliding_window > 0 && c_.sliding_layers[i] ? window_bias : full_bias;
      const auto layer = [this, i, cache, S, groups, dropout_p, sdpa, rope, bias, ctx](const at::Tensor& x) {
        const LlamaLayer& L = layers_[i];
        const at::Tensor h = llama_rms_norm(x, L.input_layernorm, c_.rms_norm_eps);
        const at::Tensor q =
            nn::apply_rope(nn::split_heads(nn::lora_linear(h, L.q_proj, ctx), c_.num_heads), rope);
        at::Tensor k =
            nn::apply_rope(nn::split_heads(nn::lora_linear(h, L.k_proj, ctx), c_.num_kv_heads), rope);
        at::Tensor v = nn::split_heads(nn::lora_linear(h, L.v_proj, ctx), c_.num_kv_heads);  // [B, Hkv, T, D]
        if (cache != nullptr) {
          if (S > 0) {
            k = at::cat({cache->keys[i], k}, 2);
            v = at::cat({cache->values[i], v}, 2);
          }
          cache->keys[i] = k;
          cache->values[i] = v;
        }
        const double scale = std::pow(static_cast<double>(c_.head_dim), -0.5);
        at::Tensor a;  // [B, H, T, D]
        if (sdpa) {
          a = nn::sdpa_attention(q, k, v, bias, scale);
        } else {
          // repeat_kv: kv head j serves q heads j*groups .. j*groups + groups - 1.
          const at::Tensor kr = k.repeat_interleave(groups, 1);  // [B, H, S+T, D]
          const at::Tensor vr = v.repeat_interleave(groups, 1);
          const at::Tensor scores = at::matmul(q, kr.transpose(-2, -1)) * scale + bias;
          // Softmax in fp32, then back to the compute dtype (LLaMA's eager_attention_forward).
          const at::Tensor probs =
              nn::dropout(at::softmax(scores, -1, at::kFloat).to(q.scalar_type()), dropout_p, ctx);
          a = at::matmul(probs, vr);
        }
        a = nn::merge_heads(a);  // [B, T, H*D]
        const at::Tensor y = x + nn::lora_linear(a, L.o_proj, ctx);
        const at::Tensor g = llama_rms_norm(y, L.post_attention_layernorm, c_.rms_norm_eps);
        const at::Tensor f =
            at::silu(nn::lora_linear(g, L.gate_proj, ctx)) * nn::lora_linear(g, L.up_proj, ctx);
        return y + nn::lora_linear(f, L.down_proj, ctx);
      };
      // The model (its layers) must outlive the backward pass, as it does in training.
      x = checkpointing ? nn::checkpoint_block(layer, x, ctx) : layer(x);
    }
    return llama_rms_norm(x, norm_, c_.rms_norm_eps);  // [B, T, C]
  }

  at::Tensor output_head(const at::Tensor& x, const nn::ForwardContext& ctx) override {
    return nn::lora_linear(x, lm_head_, ctx);  // [..., V]
  }

 private:
  LlamaConfig c_;
  std::string json_;
  at::Tensor embed_tokens_;  // [V, C]
  std::vector<LlamaLayer> layers_;
  at::Tensor norm_;     // [C]
  nn::Linear lm_head_;  // [V, C]; its weight is embed_tokens_ when tied
  nn::AttnImplementation attn_ = nn::AttnImplementation::kEager;
};

}  // namespace

LlamaConfig LlamaConfig::from_hf_config(const HfConfig& hf) {
  LlamaConfig c;
  c.model_type = hf.model_type();
  if (c.model_type == "llama") {
    c.hf_class_name = "LlamaForCausalLM";
  } else if (c.model_type == "mistral") {
    c.hf_class_name = "MistralForCausalLM";
  } else if (c.model_type == "qwen2") {
    c.hf_class_name = "Qwen2ForCausalLM";
  } else {
    fail(hf.source() + ": model_type '" + c.model_type +
         "' is not of the LLaMA family (llama, mistral, qwen2)");
  }
  c.vocab_size = hf.get_int("vocab_size");
  c.hidden_size = hf.get_int("hidden_size");
  c.intermediate_size = hf.get_int("intermediate_size");
  c.num_layers = hf.get_int("num_hidden_layers");
  c.num_heads = hf.get_int("num_attention_heads");
  c.num_kv_heads = hf.get_int("num_key_value_heads", c.num_heads);
  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) fail(hf.source() + ": " + key + " must be positive, got " + std::to_string(v));
  };
  positive("vocab_size", c.vocab_size);
  positive("hidden_size", c.hidden_size);
  positive("intermediate_size", c.intermediate_size);
  positive("num_hidden_layers", c.num_layers);
  positive("num_attention_heads", c.num_heads);
  positive("num_key_value_heads", c.num_kv_heads);
  if (c.num_heads % c.num_kv_heads != 0) {
    fail(hf.source() + ": num_attention_heads " + std::to_string(c.num_heads) +
         " is not a multiple of num_key_value_heads " + std::to_string(c.num_kv_heads));
  }
  c.head_dim = hf.get_int("head_dim", c.hidden_size / c.num_heads);
  positive("head_dim", c.head_dim);
  if (!hf.has("head_dim") && c.hidden_size % c.num_heads != 0) {
    fail(hf.source() + ": hidden_size is not a multiple of num_attention_heads and head_dim is not set");
  }
  c.max_position_embeddings = hf.get_int("max_position_embeddings", 2048);
  c.rms_norm_eps = hf.get_float("rms_norm_eps", 1e-6);
  const std::string act = hf.get_string("hidden_act", "silu");
  if (act != "silu") fail(hf.source() + ": hidden_act '" + act + "' is not supported (silu)");
  c.rope = parse_rope(hf, c.head_dim, c.max_position_embeddings);
  c.attention_dropout = hf.get_float("attention_dropout", 0.0);
  // LlamaConfig, MistralConfig and Qwen2Config all default to untied in transformers 5.17.
  c.tie_word_embeddings = hf.get_bool("tie_word_embeddings", false);
  c.sliding_layers.assign(static_cast<size_t>(c.num_layers), false);
  if (c.model_type == "llama") {
    c.qkv_bias = c.o_bias = hf.get_bool("attention_bias", false);
    c.mlp_bias = hf.get_bool("mlp_bias", false);
  } else if (c.model_type == "mistral") {
    c.sliding_window = hf.get_int("sliding_window", 0);
    c.sliding_layers.assign(c.sliding_layers.size(), true);
  } else {  // qwen2
    c.qkv_bias = true;
    if (hf.get_bool("use_sliding_window", false)) c.sliding_window = hf.get_int("sliding_window", 0);
    // Qwen2Config: layer_types when given, else sliding from max_window_layers on.
    if (hf.has("layer_types")) {
      const Json& types = hf.json().at("layer_types");
      if (!types.is_array() || static_cast<int64_t>(types.size()) != c.num_layers) {
        fail(hf.source() + ": layer_types must list one type per layer");
      }
      for (size_t i = 0; i < types.size(); ++i) c.sliding_layers[i] = types[i] == "sliding_attention";
    } else {
      const int64_t first = hf.get_int("max_window_layers", 28);
      for (int64_t i = first; i < c.num_layers; ++i) c.sliding_layers[static_cast<size_t>(i)] = true;
    }
  }
  if (c.sliding_window < 0) fail(hf.source() + ": sliding_window must be positive");
  return c;
}

at::Tensor llama_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor variance = xf.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (xf * at::rsqrt(variance + eps)).to(x.scalar_type());
}

at::Tensor decoder_attention_bias(int64_t B, int64_t T, int64_t S, const at::Tensor& key_mask,
                                  const at::Tensor& segment_ids, int64_t sliding_window, at::ScalarType dtype,
                                  c10::Device device) {
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(device);
  const at::Tensor q = at::arange(S, S + T, long_opts).view({T, 1});  // absolute query index
  const at::Tensor k = at::arange(0, S + T, long_opts).view({1, S + T});
  at::Tensor allowed = k.le(q);  // [T, S+T] causal
  if (sliding_window > 0) allowed = allowed & k.gt(q - sliding_window);
  allowed = allowed.view({1, 1, T, S + T}).expand({B, 1, T, S + T});
  if (key_mask.defined()) allowed = allowed & key_mask.to(at::kBool).view({B, 1, 1, S + T});
  if (segment_ids.defined()) {
    if (S != 0) fail("decoder_attention_bias: segment_ids need S == 0");
    allowed = allowed & segment_ids.view({B, 1, T, 1}).eq(segment_ids.view({B, 1, 1, T}));
  }
  return at::zeros({B, 1, T, S + T}, at::TensorOptions().dtype(dtype).device(device))
      .masked_fill(~allowed, nn::dtype_lowest(dtype));
}

at::Tensor default_position_ids(const CausalLmInputs& in, int64_t S) {
  const int64_t B = in.input_ids.size(0), T = in.input_ids.size(1);
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(in.input_ids.device());
  if (in.segment_ids.defined()) {
    // Position = index - index of the segment's first token (segments are contiguous runs).
    const at::Tensor idx = at::arange(T, long_opts).expand({B, T});
    at::Tensor start = at::ones({B, T}, long_opts.dtype(at::kBool));
    if (T > 1)
      start.narrow(1, 1, T - 1)
          .copy_(in.segment_ids.narrow(1, 1, T - 1).ne(in.segment_ids.narrow(1, 0, T - 1)));
    const at::Tensor first = std::get<0>(at::cummax(at::where(start, idx, at::zeros_like(idx)), 1));
    return idx - first;
  }
  if (!in.attention_mask.defined()) return at::arange(S, S + T, long_opts).expand({B, T});
  const at::Tensor mask = in.attention_mask.to(at::kLong);
  const at::Tensor pos = (mask.cumsum(-1) - 1).masked_fill(mask.eq(0), 0);
  return pos.narrow(1, S, T);
}

std::unique_ptr<CausalLM> load_llama_family(const HfConfig& config, const std::string& dir,
                                            const CausalLmLoadOptions& options) {
  auto model =
      std::make_unique<LlamaModel>(LlamaConfig::from_hf_config(config), config_json_text(config, dir));
  model->load(dir, options.dtype);
  model->set_attn_implementation(options.attn_implementation);
  return model;
}

std::unique_ptr<CausalLM> load_llama(const std::string& dir, const CausalLmLoadOptions& options) {
  return load_llama_family(HfConfig::load(dir), dir, options);
}

}  // namespace qlora::models
