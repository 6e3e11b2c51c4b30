// MPT / PhoGPT decoders with llm-foundry's semantics (mosaicml/llm-foundry at 6e3842b, attn_impl "torch":
// llmfoundry/models/mpt/modeling_mpt.py, layers/attention.py, blocks.py, ffn.py, norm.py). transformers'
// MptForCausalLM is the special case no_bias, expansion_ratio 4, alibi, no wpe, tied; it computes the same
// numbers (its ALiBi table and softmax are float32 like llm-foundry's), checked by tools/gen_mpt_fixtures.py.
//
// Numerics that matter for parity:
//  * The ALiBi table is built once at max_seq_len in float32 (llm-foundry calls _attn_bias with
//    dtype=torch.float32 since #329, June 2023; HF builds it from int32 * float32 slopes). The scores are
//    computed in the model dtype, then adding the float32 bias promotes them, so with a bias the softmax
//    runs in float32 whatever the model dtype (the same as HF's explicit fp32 softmax); without ALiBi and
//    without a mask llm-foundry has no bias and softmaxes in the model dtype, and so does this file.
//  * The table is sliced to its LAST s_k columns: key j gets slope * (j - (s_k - 1)) for every query, not
//    slope * (j - i); the per-row constant cancels in the softmax up to rounding. With segment_ids
//    (apply_sequence_id) llm-foundry slices the FIRST T columns instead, and so does this file.
//  * LEFT padding: positions are not shifted. The bias of a key depends only on its column, so a row with
//    p pads sees its real keys at the same offsets from the last column as an unpadded row; the masked
//    keys get finfo(float32).min folded into the bias, then finfo(model dtype).min again in the attention
//    (llm-foundry passes the mask to both), and the causal mask uses finfo(model dtype).min.
//  * attn_implementation sdpa: the same bias with the padding and causal masks folded in as finfo.min
//    (sdpa_mask), cast to the compute dtype, through at::scaled_dot_product_attention with softmax_scale.
//    llm-foundry's attn_impl "torch" is the eager form; sdpa agrees up to summation order (and, in bf16 /
//    fp16, the rounding of the ALiBi table to that dtype, which eager keeps in float32).
#include "qlora/models/mpt.h"

#include <ATen/ATen.h>

#include <cctype>
#include <cmath>
#include <limits>

#include "decoder_families.h"
#include "qlora/core/error.h"
#include "qlora/core/log.h"
#include "qlora/io/checkpoint.h"
#include "qlora/models/llama.h"
#include "qlora/models/quantize.h"
#include "qlora/nn/attention.h"
#include "qlora/nn/checkpoint.h"
#include "qlora/nn/norm.h"

namespace qlora::models {
namespace {

struct MptBlock {
  nn::LayerNorm norm_1;
  nn::Linear Wqkv;      // [C + 2*Hkv*D, C]: [Q | K | V] along the output, heads (h d) contiguous
  nn::Linear out_proj;  // [C, C]
  nn::LayerNorm norm_2;
  nn::Linear up_proj;    // [F, C]
  nn::Linear down_proj;  // [C, F]
};

// One module of the table: where its weight (and bias) live, and its shape.
struct ModuleSlot {
  std::string module;  // HF module path (llm-foundry and transformers agree)
  at::Tensor* weight = nullptr;
  at::Tensor* bias = nullptr;  // nullptr: no bias in this config
  nn::Linear* linear = nullptr;
  std::vector<int64_t> weight_shape;
};

class MptModel final : public CausalLM {
 public:
  MptModel(MptConfig c, std::string json) : c_(c), json_(std::move(json)) {
    blocks_.resize(static_cast<size_t>(c_.n_layers));
    for (MptBlock& b : blocks_) b.norm_1.eps = b.norm_2.eps = c_.layer_norm_eps;
    norm_f_.eps = c_.layer_norm_eps;
    if (c_.alibi) alibi_ = mpt_alibi_bias(c_.n_heads, c_.max_seq_len, c_.alibi_bias_max);
  }

  std::string model_type() const override { return "mpt"; }
  // llm-foundry's class (PhoGPT's auto_map), which PEFT records; transformers' own is MptForCausalLM.
  std::string hf_class_name() const override {
    return c_.transformers_code ? "MptForCausalLM" : "MPTForCausalLM";
  }
  int64_t vocab_size() const override { return c_.vocab_size; }
  int64_t num_layers() const override { return c_.n_layers; }
  int64_t max_sequence_length() const override { return c_.max_seq_len; }
  const std::string& config_json() const override { return json_; }
  at::ScalarType dtype() const override { return wte_.scalar_type(); }

  // THE table of names, in MPTForCausalLM's module order.
  std::vector<ModuleSlot> module_table() {
    const int64_t C = c_.d_model, F = c_.ffn_hidden_size, KV = c_.kv_n_heads * c_.head_dim();
    std::vector<ModuleSlot> t;
    auto linear = [&](std::string name, nn::Linear& l, int64_t out, int64_t in, bool bias) {
      t.push_back({std::move(name), &l.base.weight, bias ? &l.base.bias : nullptr, &l, {out, in}});
    };
    auto norm = [&](std::string name, nn::LayerNorm& n) {
      t.push_back({std::move(name), &n.weight, c_.bias ? &n.bias : nullptr, nullptr, {C}});
    };
    t.push_back({"transformer.wte", &wte_, nullptr, nullptr, {c_.vocab_size, C}});
    if (c_.learned_pos_emb) t.push_back({"transformer.wpe", &wpe_, nullptr, nullptr, {c_.max_seq_len, C}});
    for (size_t i = 0; i < blocks_.size(); ++i) {
      MptBlock& b = blocks_[i];
      const std::string p = "transformer.blocks." + std::to_string(i) + ".";
      norm(p + "norm_1", b.norm_1);
      linear(p + "attn.Wqkv", b.Wqkv, C + 2 * KV, C, c_.bias);
      linear(p + "attn.out_proj", b.out_proj, C, C, c_.bias);
      norm(p + "norm_2", b.norm_2);
      linear(p + "ffn.up_proj", b.up_proj, F, C, c_.bias);
      linear(p + "ffn.down_proj", b.down_proj, C, F, c_.bias);
    }
    norm("transformer.norm_f", norm_f_);
    // Tied: llm-foundry has no lm_head module at all (SharedEmbedding unembeds with wte).
    if (!c_.tie_word_embeddings) linear("lm_head", lm_head_, c_.vocab_size, C, false);
    return t;
  }

  void load(const std::string& dir, at::ScalarType dtype) {
    const Checkpoint ckpt = open_checkpoint(dir);
    auto read = [&](const std::string& name, const std::vector<int64_t>& shape, at::Tensor& slot) {
      slot = ckpt.tensor(name, shape).to(dtype).clone();  // own the memory rather than alias the file mapping
    };
    for (const ModuleSlot& s : module_table()) {
      if (!ckpt.contains(s.module + ".weight")) {
        std::string why;
        if (s.module == "transformer.wpe")
          why = " (config.json: learned_pos_emb is true; llm-foundry's default)";
        if (s.module == "lm_head") why = " (config.json: tie_word_embeddings is false)";
        fail(ckpt.path() + ": missing tensor '" + s.module + ".weight'" + why);
      }
      if (s.linear == nullptr || !read_prequantized(ckpt, s.module, s.weight_shape, dtype, s.linear->base))
        read(s.module + ".weight", s.weight_shape, *s.weight);
      if (s.bias != nullptr) {
        if (!ckpt.contains(s.module + ".bias")) {
          fail(ckpt.path() + ": missing tensor '" + s.module + ".bias' (config.json: no_bias is false)");
        }
        read(s.module + ".bias", {s.weight_shape[0]}, *s.bias);
      }
    }
    // transformers ties lm_head to wte unless the checkpoint stores a different head (then it keeps that
    // one, untied); llm-foundry has no lm_head when tied, so a stored one is reported unused below.
    if (c_.transformers_code && c_.tie_word_embeddings && ckpt.contains("lm_head.weight")) {
      at::Tensor stored = ckpt.tensor("lm_head.weight", {c_.vocab_size, c_.d_model});
      if (!at::equal(stored.to(wte_.scalar_type()), wte_)) {
        log::warn(ckpt.path() +
                  ": config.json says tie_word_embeddings but the checkpoint's 'lm_head.weight' "
                  "differs from transformer.wte.weight; using the stored head untied, as transformers does");
        c_.tie_word_embeddings = false;
        lm_head_.base.weight = stored.to(dtype).clone();
      }
    }
    ckpt.warn_unread();
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
      out.emplace_back(s.module + ".weight", s.weight);
      if (s.bias != nullptr) out.emplace_back(s.module + ".bias", s.bias);
    }
    return out;
  }

  std::vector<CausalLmTensorInfo> tensor_table() const override {
    MptModel shape_only(c_, "");
    std::vector<CausalLmTensorInfo> out;
    for (const ModuleSlot& s : shape_only.module_table()) {
      out.push_back({s.module + ".weight", s.weight_shape, false});
      if (s.bias != nullptr) out.push_back({s.module + ".bias", {s.weight_shape[0]}, false});
    }
    return out;
  }

  // The ALiBi table stays float32, as llm-foundry keeps it.
  void to(at::ScalarType dtype) override { cast_parameters(named_parameters(), dtype); }
  void set_attn_implementation(nn::AttnImplementation impl) override { attn_ = impl; }
  nn::AttnImplementation attn_implementation() const override { return attn_; }

  at::Tensor hidden_states(const CausalLmInputs& in, KvCache* cache, const nn::ForwardContext& ctx) override {
    const at::Tensor& ids = in.input_ids;  // [B, T]
    if (!ids.defined() || ids.dim() != 2) fail("mpt forward: input_ids must be [B, T]");
    const int64_t B = ids.size(0), T = ids.size(1);
    const int64_t S = cache != nullptr ? cache->length() : 0;
    const int64_t s_k = S + T;
    if (in.segment_ids.defined() && S != 0) fail("mpt forward: segment_ids cannot be used with a cache");
    if (in.segment_ids.defined() && in.segment_ids.sizes() != ids.sizes()) {
      fail("mpt forward: segment_ids must be [B, T] like input_ids, got " +
           shape_string(in.segment_ids.sizes()));
    }
    if (in.attention_mask.defined() && (in.attention_mask.dim() != 2 || in.attention_mask.size(0) != B ||
                                        in.attention_mask.size(1) != s_k)) {
      fail("mpt forward: attention_mask must be [B, S + T] = [" + std::to_string(B) + ", " +
           std::to_string(s_k) + "], got " + shape_string(in.attention_mask.sizes()));
    }
    // llm-foundry asserts T <= max_seq_len and its bias slice breaks past it; wpe has max_seq_len rows.
    if (s_k > c_.max_seq_len && (c_.alibi || c_.learned_pos_emb)) {
      fail("mpt forward: " + std::to_string(s_k) + " tokens (cached + new) exceed max_seq_len " +
           std::to_string(c_.max_seq_len) + " of config.json");
    }
    if (cache != nullptr && cache->keys.empty()) {
      cache->keys.resize(blocks_.size());
      cache->values.resize(blocks_.size());
    }
    const at::Tensor key_masked =  // [B, 1, 1, s_k] true = padding
        in.attention_mask.defined() ? in.attention_mask.to(at::kBool).logical_not().view({B, 1, 1, s_k})
                                    : at::Tensor();
    const at::Tensor bias = attention_bias(in.segment_ids, key_masked, T, s_k);
    const double attn_p = ctx.training ? c_.attn_pdrop : 0.0;
    const at::Tensor mask =
        nn::use_sdpa(attn_, attn_p, ctx) ? sdpa_mask(bias, key_masked, T, s_k) : at::Tensor();

    at::Tensor x = at::embedding(wte_, ids);  // [B, T, C]
    if (c_.learned_pos_emb) x = x + at::embedding(wpe_, learned_positions(in, S));
    x = nn::dropout(x, c_.emb_pdrop, ctx);
    // Checkpointing only while training under grad mode (checkpoint_block checks the latter), never with
    // a cache: the recompute would write the cache twice.
    const bool checkpointing = ctx.gradient_checkpointing && ctx.training && cache == nullptr;
    for (size_t i = 0; i < blocks_.size(); ++i) {
      // One block x [B, T, C] -> [B, T, C]. The captured bias / mask (ALiBi, padding, segments) are
      // constants of the inputs; by value, since the recompute runs after forward has returned.
      const auto block = [this, i, bias, key_masked, mask, cache, attn_p, ctx](const at::Tensor& x) {
        const MptBlock& b = blocks_[i];
        const at::Tensor a =
            attention(b, nn::layer_norm(x, b.norm_1), bias, key_masked, mask, cache, i, attn_p, ctx);
        const at::Tensor y = x + nn::dropout(a, c_.resid_pdrop, ctx);
        const at::Tensor m = nn::layer_norm(y, b.norm_2);
        const at::Tensor n =
            nn::lora_linear(nn::activate(nn::lora_linear(m, b.up_proj, ctx), c_.ffn_act), b.down_proj, ctx);
        return y + nn::dropout(n, c_.resid_pdrop, ctx);
      };
      // The model (its blocks) must outlive the backward pass, as it does in training.
      x = checkpointing ? nn::checkpoint_block(block, x, ctx) : block(x);
    }
    return nn::layer_norm(x, norm_f_);  // [B, T, C]
  }

  at::Tensor output_head(const at::Tensor& x, const nn::ForwardContext& ctx) override {
    at::Tensor logits =
        c_.tie_word_embeddings ? at::linear(x, wte_) : nn::lora_linear(x, lm_head_, ctx);  // [..., V]
    if (c_.logit_scale) logits = logits * *c_.logit_scale;
    return logits;
  }

 private:
  // Rows of wpe for the new tokens [B, T]: position_ids when given; with segments the contract's restart
  // at 0 per segment (llm-foundry's sequence_id does not restart them); otherwise MPTModel.forward's
  // arange(S, S + T) - cumsum(pads), clamped at 0 (the contract's cumsum(mask) - 1 at real tokens, and
  // what llm-foundry gives at padded ones).
  at::Tensor learned_positions(const CausalLmInputs& in, int64_t S) const {
    if (in.position_ids.defined()) return in.position_ids;
    if (in.segment_ids.defined()) return default_position_ids(in, S);
    const int64_t T = in.input_ids.size(1);
    const at::Tensor pos =
        at::arange(S, S + T, at::TensorOptions().dtype(at::kLong).device(in.input_ids.device()))
            .unsqueeze(0);  // [1, T]
    if (!in.attention_mask.defined()) return pos.expand({in.input_ids.size(0), T});
    const at::Tensor pads = in.attention_mask.eq(0).to(at::kInt).cumsum(1).narrow(1, S, T);  // [B, T]
    return at::clamp_min(pos - pads, 0);
  }

  // MPTModel._attn_bias: float32, [1|B, H|1, 1|T, s_k]; undefined when there is neither ALiBi, nor a
  // mask, nor segments (then llm-foundry passes attn_bias=None).
  at::Tensor attention_bias(const at::Tensor& segment_ids, const at::Tensor& key_masked, int64_t T,
                            int64_t s_k) const {
    const double min32 = static_cast<double>(std::numeric_limits<float>::lowest());
    const auto f32 = at::TensorOptions().dtype(at::kFloat).device(wte_.device());
    const at::Tensor alibi = c_.alibi ? alibi_.to(wte_.device()) : at::Tensor();  // no-op on CPU
    at::Tensor bias;
    if (segment_ids.defined()) {
      // apply_sequence_id: the first T columns of the table, then other segments masked.
      const int64_t B = segment_ids.size(0);
      bias = c_.alibi ? alibi.narrow(3, 0, T) : at::zeros({1, 1, 1, T}, f32);
      const at::Tensor other =
          segment_ids.view({B, 1, T, 1}).ne(segment_ids.view({B, 1, 1, T}));  // [B, 1, T, T]
      bias = at::where(other, at::scalar_tensor(min32, f32), bias);
    } else if (c_.alibi) {
      bias = alibi.narrow(3, c_.max_seq_len - s_k, s_k);  // [1, H, 1, s_k]
    }
    if (key_masked.defined()) {
      if (!bias.defined()) bias = at::zeros({1, 1, 1, s_k}, f32);
      bias = at::where(key_masked, at::scalar_tensor(min32, f32), bias);
    }
    return bias;
  }

  // The additive mask of the sdpa path: the bias (ALiBi, segments, padding as finfo(float32).min), then
  // padding and the causal tril as finfo(float32).min, where the eager path masked_fills them into the
  // scores. Float32 [1|B, H|1, T|1, s_k]; undefined when eager would add and mask nothing.
  at::Tensor sdpa_mask(const at::Tensor& bias, const at::Tensor& key_masked, int64_t T, int64_t s_k) const {
    const double min32 = static_cast<double>(std::numeric_limits<float>::lowest());
    at::Tensor mask = bias;
    if (key_masked.defined()) {
      if (!mask.defined())
        mask = at::zeros({1, 1, 1, s_k}, at::TensorOptions().dtype(at::kFloat).device(wte_.device()));
      mask = mask.masked_fill(key_masked, min32);
    }
    if (T > 1) {
      const auto long_opts = at::TensorOptions().dtype(at::kLong).device(wte_.device());
      const at::Tensor later =
          at::arange(s_k, long_opts).view({1, s_k}).gt(at::arange(T, long_opts).view({T, 1}) + (s_k - T));
      if (!mask.defined())
        mask = at::zeros({1, 1, 1, s_k}, at::TensorOptions().dtype(at::kFloat).device(wte_.device()));
      mask = mask.masked_fill(later.view({1, 1, T, s_k}), min32);
    }
    return mask;
  }

  // GroupedQueryAttention + scaled_multihead_dot_product_attention. x: [B, T, C] -> [B, T, C].
  // `sdpa_mask` defined: the sdpa path (bias and key_masked are then folded into it).
  at::Tensor attention(const MptBlock& b, const at::Tensor& x, const at::Tensor& bias,
                       const at::Tensor& key_masked, const at::Tensor& sdpa_mask, KvCache* cache,
                       size_t layer, double dropout_p, const nn::ForwardContext& ctx) const {
    const int64_t C = c_.d_model, D = c_.head_dim(), KV = c_.kv_n_heads * D;
    at::Tensor qkv = nn::lora_linear(x, b.Wqkv, ctx);  // [B, T, C + 2 KV]
    if (c_.clip_qkv) qkv = qkv.clamp(-*c_.clip_qkv, *c_.clip_qkv);
    const at::Tensor q = nn::split_heads(qkv.narrow(2, 0, C), c_.n_heads);  // [B, H, T, D]
    at::Tensor k = nn::split_heads(qkv.narrow(2, C, KV), c_.kv_n_heads);    // [B, Hkv, T, D]
    at::Tensor v = nn::split_heads(qkv.narrow(2, C + KV, KV), c_.kv_n_heads);
    if (cache != nullptr) {
      if (cache->keys[layer].defined()) {
        k = at::cat({cache->keys[layer], k}, 2);
        v = at::cat({cache->values[layer], v}, 2);
      }
      cache->keys[layer] = k;
      cache->values[layer] = v;
    }
    if (nn::use_sdpa(attn_, dropout_p, ctx)) {
      const at::Tensor a = nn::sdpa_attention(q, k, v, sdpa_mask, c_.softmax_scale);  // [B, H, T, D]
      return nn::lora_linear(nn::merge_heads(a), b.out_proj, ctx);
    }
    const int64_t T = q.size(2), s_k = k.size(2);
    if (c_.kv_n_heads > 1 &&
        c_.kv_n_heads < c_.n_heads) {  // repeat_kv_for_gqa: q head h reads kv head h / rep
      k = k.repeat_interleave(c_.n_heads / c_.kv_n_heads, 1);
      v = v.repeat_interleave(c_.n_heads / c_.kv_n_heads, 1);
    }  // one kv head (multiquery) broadcasts in the matmuls
    at::Tensor scores = at::matmul(q, k.transpose(-2, -1)) * c_.softmax_scale;  // [B, H, T, s_k]
    if (bias.defined()) scores = scores + bias;  // a float32 bias promotes the scores to float32
    const double min_q = nn::dtype_lowest(q.scalar_type());
    if (key_masked.defined()) scores = scores.masked_fill(key_masked, min_q);
    if (T > 1) {
      // tril over max(T, s_k), last T rows and s_k columns: query i sees keys j <= i + s_k - T.
      const auto long_opts = at::TensorOptions().dtype(at::kLong).device(q.device());
      const at::Tensor later =
          at::arange(s_k, long_opts).view({1, s_k}).gt(at::arange(T, long_opts).view({T, 1}) + (s_k - T));
      scores = scores.masked_fill(later.view({1, 1, T, s_k}), min_q);
    }
    const at::Tensor probs = nn::dropout(at::softmax(scores, -1), dropout_p, ctx);
    return nn::lora_linear(nn::merge_heads(at::matmul(probs.to(v.scalar_type()), v)), b.out_proj, ctx);
  }

  MptConfig c_;
  std::string json_;
  at::Tensor wte_;  // [V, C]
  at::Tensor wpe_;  // [max_seq_len, C] when learned_pos_emb
  std::vector<MptBlock> blocks_;
  nn::LayerNorm norm_f_;
  nn::Linear lm_head_;  // [V, C] when not tied
  at::Tensor alibi_;    // float32 [1, H, 1, max_seq_len] when alibi
  nn::AttnImplementation attn_ = nn::AttnImplementation::kEager;
};

void require_positive(const HfConfig& hf, const char* key, int64_t v) {
  if (v <= 0) fail(hf.source() + ": " + key + " must be positive, got " + std::to_string(v));
}

// A flag that must keep its llm-foundry default for this implementation.
void require_flag(const HfConfig& hf, const HfConfig& attn, const std::string& key, bool supported,
                  const std::string& why) {
  if (attn.get_bool(key, supported) != supported) {
    fail(hf.source() + ": attn_config." + key + " is " + (supported ? "false" : "true") +
         ", which is not supported (" + why + ")");
  }
}

nn::Activation parse_ffn_act(const HfConfig& hf, const HfConfig& ffn) {
  if (!ffn.has("ffn_act_fn")) return nn::Activation::kGeluErf;  // _FFN_ACT_FN_DEFAULT
  const HfConfig act = ffn.sub("ffn_act_fn");
  const std::string name = act.get_string("name");
  const std::string approximate = act.get_string("approximate", "none");
  if (name == "gelu" && approximate == "none") return nn::Activation::kGeluErf;
  if (name == "gelu" && approximate == "tanh") return nn::Activation::kGeluTanh;
  if (name == "relu") return nn::Activation::kRelu;
  fail(hf.source() + ": ffn_config.ffn_act_fn " + act.json().dump() +
       " is not supported (gelu with approximate none or tanh, relu)");
}

// The folder was written for transformers' MptForCausalLM when config.json names it (or no class at all:
// AutoModelForCausalLM then builds it); PhoGPT and other llm-foundry checkpoints name their own remote code
// (auto_map, architectures "MPTForCausalLM"). The two read the same MptConfig keys differently.
bool written_for_transformers(const HfConfig& hf) {
  if (hf.has("auto_map")) return false;
  if (hf.has("architectures") && hf.json().at("architectures").is_array()) {
    for (const Json& a : hf.json().at("architectures"))
      if (a.is_string() && a.get<std::string>() == "MPTForCausalLM") return false;
  }
  return true;
}

// transformers 5.17 modeling_mpt: ALiBi always with alibi_bias_max 8, no biases and no wpe whatever
// no_bias / learned_pos_emb say, MLP 4 x d_model with exact GELU, LayerNorm(layer_norm_epsilon), no logit
// scale, multi-head attention. Keys it ignores are warned about when their value would change the model
// under llm-foundry's reading, so a user sees why the folder computes what transformers computes.
void transformers_mpt_semantics(const HfConfig& hf, const HfConfig& attn, MptConfig& c) {
  c.kv_n_heads = c.n_heads;
  c.alibi = true;
  c.alibi_bias_max = 8;
  c.ffn_act = nn::Activation::kGeluErf;
  c.ffn_hidden_size = 4 * c.d_model;
  c.bias = false;
  c.learned_pos_emb = false;
  c.layer_norm_eps = hf.get_float("layer_norm_epsilon", 1e-5);
  c.tie_word_embeddings = hf.get_bool("tie_word_embeddings", true);
  std::vector<std::string> ignored;
  auto differs = [&](const HfConfig& where, const std::string& prefix, const std::string& key,
                     const Json& used) {
    if (where.has(key) && where.json().at(key) != used)
      ignored.push_back(prefix + key + " " + where.json().at(key).dump());
  };
  differs(hf, "", "no_bias", true);
  differs(hf, "", "learned_pos_emb", false);
  differs(hf, "", "expansion_ratio", 4);
  differs(hf, "", "logit_scale", nullptr);
  differs(attn, "attn_config.", "alibi", true);
  differs(attn, "attn_config.", "alibi_bias_max", 8);
  differs(attn, "attn_config.", "attn_type", "multihead_attention");
  for (const char* key : {"rope", "qk_ln", "qk_gn", "prefix_lm"}) differs(attn, "attn_config.", key, false);
  if (hf.has("ffn_config")) ignored.push_back("ffn_config");
  if (!ignored.empty()) {
    std::string list;
    for (const auto& k : ignored) list += (list.empty() ? "" : ", ") + k;
    log::warn(hf.source() + ": transformers' MptForCausalLM (architectures, no auto_map) ignores " + list +
              "; following transformers");
  }
}

void llm_foundry_semantics(const HfConfig& hf, const HfConfig& attn, MptConfig& c) {
  require_flag(hf, attn, "rope", false, "rotary MPT models; only ALiBi / learned positions");
  require_flag(hf, attn, "qk_ln", false, "layer norm on queries and keys");
  require_flag(hf, attn, "qk_gn", false, "group norm on queries and keys");
  require_flag(hf, attn, "prefix_lm", false, "prefix-LM attention");
  if (attn.get_int("sliding_window_size", -1) != -1) {
    fail(hf.source() + ": attn_config.sliding_window_size is not supported (only -1)");
  }
  const std::string impl = attn.get_string("attn_impl", "triton");
  if (impl != "torch" && impl != "flash" && impl != "triton") {
    fail(hf.source() + ": attn_config.attn_impl '" + impl + "' is not one of torch, flash, triton");
  }
  const std::string type = attn.get_string("attn_type", "multihead_attention");
  if (type == "multihead_attention") {
    c.kv_n_heads = c.n_heads;
  } else if (type == "multiquery_attention") {
    c.kv_n_heads = 1;
  } else if (type == "grouped_query_attention") {
    c.kv_n_heads = attn.get_int("kv_n_heads", 1);
    if (c.kv_n_heads <= 0 || c.kv_n_heads > c.n_heads || c.n_heads % c.kv_n_heads != 0) {
      fail(hf.source() + ": attn_config.kv_n_heads " + std::to_string(c.kv_n_heads) +
           " must divide n_heads " + std::to_string(c.n_heads));
    }
  } else {
    fail(hf.source() + ": attn_config.attn_type '" + type +
         "' is not one of multihead_attention, multiquery_attention, grouped_query_attention");
  }
  c.alibi = attn.get_bool("alibi", false);
  c.alibi_bias_max = attn.get_float("alibi_bias_max", 8);
  c.attn_uses_sequence_id = attn.get_bool("attn_uses_sequence_id", false);

  const HfConfig ffn = hf.has("ffn_config") ? hf.sub("ffn_config") : HfConfig(Json::object(), hf.source());
  const std::string ffn_type = ffn.get_string("ffn_type", "mptmlp");
  if (ffn_type != "mptmlp") {
    fail(hf.source() + ": ffn_config.ffn_type '" + ffn_type + "' is not supported (only mptmlp)");
  }
  c.ffn_act = parse_ffn_act(hf, ffn);
  if (auto hidden = ffn.find_int("ffn_hidden_size")) {
    c.ffn_hidden_size = *hidden;
  } else {
    const double ratio = hf.get_float("expansion_ratio", 4);
    const double hidden_f = static_cast<double>(c.d_model) * ratio;
    if (hidden_f != std::floor(hidden_f)) {
      fail(hf.source() + ": d_model * expansion_ratio = " + std::to_string(hidden_f) + " is not an integer");
    }
    c.ffn_hidden_size = static_cast<int64_t>(hidden_f);
  }
  require_positive(hf, "ffn hidden size", c.ffn_hidden_size);

  const std::string fc = hf.get_string("fc_type", "torch");
  if (fc != "torch") fail(hf.source() + ": fc_type '" + fc + "' is not supported (only torch)");
  std::string norm = hf.get_string("norm_type", "low_precision_layernorm");
  for (char& ch : norm) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (norm != "low_precision_layernorm" && norm != "layernorm") {
    fail(hf.source() + ": norm_type '" + norm + "' is not supported (low_precision_layernorm, layernorm)");
  }
  // llm-foundry's LPLayerNorm is built with torch's default eps 1e-5 whatever config.json says.
  c.layer_norm_eps = 1e-5;
  if (auto eps = hf.find_float("layer_norm_epsilon"); eps && *eps != 1e-5) {
    log::warn(
        hf.source() + ": layer_norm_epsilon " + std::to_string(*eps) +
        " is not used by llm-foundry's MPT (auto_map / MPTForCausalLM), whose norms use 1e-5; following it");
  }
  const double fraction = hf.get_float("embedding_fraction", 1.0);
  if (fraction != 1.0) {
    fail(hf.source() + ": embedding_fraction " + std::to_string(fraction) + " is not supported (only 1.0)");
  }
  c.bias = !hf.get_bool("no_bias", false);
  c.learned_pos_emb = hf.get_bool("learned_pos_emb", true);
  c.tie_word_embeddings = hf.get_bool("tie_word_embeddings", true);
  if (hf.has("logit_scale")) {
    const Json& s = hf.json().at("logit_scale");
    if (s.is_string()) {
      if (s.get<std::string>() != "inv_sqrt_d_model") {
        fail(hf.source() + ": logit_scale '" + s.get<std::string>() +
             "' is not recognised (a number, \"inv_sqrt_d_model\" or null)");
      }
      c.logit_scale = 1.0 / std::sqrt(static_cast<double>(c.d_model));
    } else {
      c.logit_scale = hf.get_float("logit_scale");
    }
  }
}

}  // namespace

MptConfig MptConfig::from_hf_config(const HfConfig& hf) {
  if (hf.model_type() != "mpt") fail(hf.source() + ": model_type '" + hf.model_type() + "' is not mpt");
  MptConfig c;
  // Missing keys take llm-foundry MPTConfig's defaults (transformers' MptConfig has the same ones).
  c.d_model = hf.get_int("d_model", 2048);
  c.n_heads = hf.get_int("n_heads", 16);
  c.n_layers = hf.get_int("n_layers", 24);
  c.max_seq_len = hf.get_int("max_seq_len", 2048);
  c.vocab_size = hf.get_int("vocab_size", 50368);
  require_positive(hf, "d_model", c.d_model);
  require_positive(hf, "n_heads", c.n_heads);
  require_positive(hf, "n_layers", c.n_layers);
  require_positive(hf, "max_seq_len", c.max_seq_len);
  require_positive(hf, "vocab_size", c.vocab_size);
  if (c.d_model % c.n_heads != 0) {
    fail(hf.source() + ": d_model " + std::to_string(c.d_model) + " is not a multiple of n_heads " +
         std::to_string(c.n_heads));
  }

  const HfConfig attn = hf.has("attn_config") ? hf.sub("attn_config") : HfConfig(Json::object(), hf.source());
  if (auto clip = attn.find_float("clip_qkv"); clip && *clip != 0) c.clip_qkv = *clip;  // `if self.clip_qkv:`
  c.softmax_scale =
      attn.get_float("softmax_scale", 1.0 / std::sqrt(static_cast<double>(c.d_model) / c.n_heads));
  c.attn_pdrop = attn.get_float("attn_pdrop", 0.0);
  c.transformers_code = written_for_transformers(hf);
  if (c.transformers_code) {
    transformers_mpt_semantics(hf, attn, c);
  } else {
    llm_foundry_semantics(hf, attn, c);
  }
  c.resid_pdrop = hf.get_float("resid_pdrop", 0.0);
  c.emb_pdrop = hf.get_float("emb_pdrop", 0.0);
  return c;
}

at::Tensor mpt_alibi_slopes(int64_t n_heads, double alibi_bias_max) {
  const int64_t n = int64_t{1} << static_cast<int64_t>(std::ceil(std::log2(static_cast<double>(n_heads))));
  const at::Tensor m = at::arange(1, n + 1, at::TensorOptions().dtype(at::kFloat)).mul(alibi_bias_max / n);
  at::Tensor slopes = at::reciprocal(at::pow(2, m));  // 1. / torch.pow(2, m)
  if (n != n_heads) {
    using at::indexing::None;
    using at::indexing::Slice;
    slopes =
        at::cat({slopes.index({Slice(1, None, 2)}), slopes.index({Slice(0, None, 2)})}).narrow(0, 0, n_heads);
  }
  return slopes;
}

at::Tensor mpt_alibi_bias(int64_t n_heads, int64_t length, double alibi_bias_max) {
  const at::Tensor distance =
      at::arange(1 - length, 1, at::TensorOptions().dtype(at::kInt)).view({1, 1, 1, length});
  return distance * mpt_alibi_slopes(n_heads, alibi_bias_max).view({1, n_heads, 1, 1});  // int32 * float32
}

std::unique_ptr<CausalLM> load_mpt(const HfConfig& config, const std::string& dir,
                                   const CausalLmLoadOptions& options) {
  auto model = std::make_unique<MptModel>(MptConfig::from_hf_config(config), config_json_text(config, dir));
  model->load(dir, options.dtype);
  model->set_attn_implementation(options.attn_implementation);
  return model;
}

std::unique_ptr<CausalLM> load_mpt(const std::string& dir, const CausalLmLoadOptions& options) {
  return load_mpt(HfConfig::load(dir), dir, options);
}

}  // namespace qlora::models
