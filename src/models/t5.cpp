// T5 / Flan-T5 / mT5 / ViT5 (transformers 5.17 models/t5/modeling_t5.py, models/mt5/modeling_mt5.py).
// Pre-norm blocks with an RMS norm, unscaled dot-product attention plus a learned relative position bias
// (computed by block 0 of each stack and reused by the others), cross-attention in the decoder.
#include "qlora/models/t5.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <set>

#include "qlora/core/error.h"
#include "qlora/core/log.h"
#include "qlora/io/checkpoint.h"
#include "qlora/models/quantize.h"
#include "qlora/nn/attention.h"
#include "qlora/nn/checkpoint.h"

namespace qlora::models {
namespace {

// One tensor of the table: its HF name, slot and shape; `linear` is set for projection weights.
struct Slot {
  std::string name;
  at::Tensor* tensor = nullptr;
  nn::Linear* linear = nullptr;
  std::vector<int64_t> shape;
  bool optional = false;
};

// THE table of names, in HF's named_parameters() order. Loading, named_parameters, named_linears and
// t5_tensor_table all walk it, so they agree by construction.
std::vector<Slot> tensor_table(T5Model& m) {
  const T5Config& c = m.config;
  const int64_t C = c.d_model, I = c.inner_dim(), F = c.d_ff;
  std::vector<Slot> t;
  auto linear = [&](const std::string& module, nn::Linear& l, int64_t out, int64_t in) {
    t.push_back({module + ".weight", &l.base.weight, &l, {out, in}, false});
  };
  auto plain = [&](const std::string& name, at::Tensor& w, std::vector<int64_t> shape) {
    t.push_back({name, &w, nullptr, std::move(shape), false});
  };
  auto attention = [&](const std::string& p, T5Attention& a) {
    linear(p + ".q", a.q, I, C);
    linear(p + ".k", a.k, I, C);
    linear(p + ".v", a.v, I, C);
    linear(p + ".o", a.o, C, I);
  };
  auto stack = [&](const std::string& name, T5Stack& s, bool decoder) {
    for (size_t i = 0; i < s.blocks.size(); ++i) {
      T5Block& b = s.blocks[i];
      const std::string p = name + ".block." + std::to_string(i) + ".layer.";
      attention(p + "0.SelfAttention", b.self_attention);
      if (i == 0) {
        plain(p + "0.SelfAttention.relative_attention_bias.weight", s.relative_attention_bias,
              {c.relative_attention_num_buckets, c.num_heads});
      }
      plain(p + "0.layer_norm.weight", b.self_norm, {C});
      std::string ff = p + "1.";
      if (decoder) {
        attention(p + "1.EncDecAttention", b.cross_attention);
        plain(p + "1.layer_norm.weight", b.cross_norm, {C});
        ff = p + "2.";
      }
      if (c.gated_act) {
        linear(ff + "DenseReluDense.wi_0", b.ff.wi_0, F, C);
        linear(ff + "DenseReluDense.wi_1", b.ff.wi_1, F, C);
      } else {
        linear(ff + "DenseReluDense.wi", b.ff.wi, F, C);
      }
      linear(ff + "DenseReluDense.wo", b.ff.wo, C, F);
      plain(ff + "layer_norm.weight", b.ff_norm, {C});
    }
    plain(name + ".final_layer_norm.weight", s.final_norm, {C});
  };
  plain("shared.weight", m.shared, {c.vocab_size, C});
  stack("encoder", m.encoder, false);
  stack("decoder", m.decoder, true);
  linear("lm_head", m.lm_head, c.vocab_size, C);
  t.back().optional = true;
  return t;
}

T5Model skeleton(const T5Config& config) {
  T5Model m;
  m.config = config;
  m.encoder.blocks.resize(static_cast<size_t>(config.num_layers));
  m.decoder.blocks.resize(static_cast<size_t>(config.num_decoder_layers));
  return m;
}

// T5LayerNorm: RMS over the last dim with the variance in float32, no mean and no bias; the
// normalised value is cast to the weight's dtype only for half weights (then weight * x).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor variance = x.to(at::kFloat).pow(2).mean(-1, /*keepdim=*/true);
  at::Tensor h = x * at::rsqrt(variance + eps);
  if (weight.scalar_type() == at::kHalf || weight.scalar_type() == at::kBFloat16)
    h = h.to(weight.scalar_type());
  return weight * h;
}

// T5Block's fp16 guard: hidden states are clamped to the fp16 range (1000 below it once an inf appeared),
// so that an overflowing FFN turns into large finite values rather than NaN in the next norm.
at::Tensor clamp_fp16(const at::Tensor& x) {
  if (x.scalar_type() != at::kHalf) return x;
  const double max = static_cast<double>(std::numeric_limits<at::Half>::max());
  const double clamp = at::isinf(x).any().item<bool>() ? max - 1000.0 : max;
  return at::clamp(x, -clamp, clamp);
}

// Relative position bias of block 0 for queries at past .. past+Tq-1 over keys 0 .. Tk-1: [1, H, Tq, Tk].
at::Tensor position_bias(const T5Model& model, const T5Stack& stack, int64_t Tq, int64_t Tk, int64_t past,
                         bool bidirectional) {
  const at::TensorOptions longs =
      at::TensorOptions().dtype(at::kLong).device(stack.relative_attention_bias.device());
  const at::Tensor query = at::arange(Tq, longs).unsqueeze(1) + past;
  const at::Tensor key = at::arange(Tk, longs).unsqueeze(0);
  const at::Tensor bucket =
      relative_position_bucket(key - query, bidirectional, model.config.relative_attention_num_buckets,
                               model.config.relative_attention_max_distance);  // [Tq, Tk]
  return at::embedding(stack.relative_attention_bias, bucket).permute({2, 0, 1}).unsqueeze(0);
}

// softmax(Q K^T + bias + mask) V without the 1/sqrt(D) scale (T5 folds it into the init).
// q: [B, H, Tq, D]; k, v: [B, H, Tk, D]; bias, mask broadcastable to [B, H, Tq, Tk] or undefined.
// sdpa: scale 1.0 and bias + mask as one additive mask (the position bias keeps its gradient: SDPA
// then runs its math backend, the fused kernels having no mask gradient).
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& bias,
                  const at::Tensor& mask, double dropout_p, nn::AttnImplementation impl,
                  const nn::ForwardContext& ctx) {
  if (nn::use_sdpa(impl, dropout_p, ctx)) {
    const at::Tensor sum = !bias.defined() ? mask : !mask.defined() ? bias : bias + mask;
    return nn::sdpa_attention(q, k, v, sum, 1.0);
  }
  at::Tensor scores = at::matmul(q, k.transpose(2, 3));
  if (bias.defined()) scores = scores + bias;
  if (mask.defined()) scores = scores + mask;
  const at::Tensor probs = nn::dropout(at::softmax(scores, -1), dropout_p, ctx);
  return at::matmul(probs, v);
}

at::Tensor heads(const at::Tensor& x, int64_t H) {
  return nn::split_heads(x, H);
}  // [B, T, H*D] -> [B, H, T, D]

// gelu_new exactly as NewGELUActivation writes it, op by op, so that bf16 / fp16 round where HF's does
// (the fused at::gelu(x, "tanh") differs by a few half-precision ulps).
at::Tensor activate(const at::Tensor& x, const T5Config& c) {
  if (c.dense_act_fn != "gelu_new") return nn::activate(x, c.dense_act);
  const double k = std::sqrt(2.0 / M_PI);
  return x * 0.5 * (1.0 + at::tanh((x + at::pow(x, 3.0) * 0.044715) * k));
}

at::Tensor feed_forward(const at::Tensor& x, const T5Model& model, const T5FeedForward& ff,
                        const nn::ForwardContext& ctx) {
  const T5Config& c = model.config;
  at::Tensor h;  // [B, T, F]
  if (c.gated_act) {
    h = activate(nn::lora_linear(x, ff.wi_0, ctx), c) * nn::lora_linear(x, ff.wi_1, ctx);
  } else {
    h = activate(nn::lora_linear(x, ff.wi, ctx), c);
  }
  h = nn::dropout(h, c.dropout_rate, ctx);
  // wo may be kept in float32 while the rest is half: its input is cast to its dtype.
  if (h.scalar_type() != ff.wo.base.weight.scalar_type()) h = h.to(ff.wo.base.weight.scalar_type());
  return nn::lora_linear(h, ff.wo, ctx);
}

// x + dropout(FF(norm(x))), clamped in fp16.
at::Tensor ff_sublayer(const at::Tensor& x, const T5Model& model, const T5Block& b,
                       const nn::ForwardContext& ctx) {
  const at::Tensor h = rms_norm(x, b.ff_norm, model.config.layer_norm_epsilon);
  return clamp_fp16(x + nn::dropout(feed_forward(h, model, b.ff, ctx), model.config.dropout_rate, ctx));
}

// Blocks are checkpointed while training under grad mode (checkpoint_block checks the latter).
bool checkpointing(const nn::ForwardContext& ctx) { return ctx.gradient_checkpointing && ctx.training; }

}  // namespace

T5Config T5Config::from_hf_config(const HfConfig& hf) {
  T5Config c;
  c.model_type = hf.model_type();
  if (c.model_type != "t5" && c.model_type != "mt5") {
    fail(hf.source() + ": model_type '" + c.model_type + "' is not a T5 model (t5, mt5)");
  }
  c.vocab_size = hf.get_int("vocab_size", 32128);
  c.d_model = hf.get_int("d_model", 512);
  c.d_kv = hf.get_int("d_kv", 64);
  c.d_ff = hf.get_int("d_ff", 2048);
  c.num_heads = hf.get_int("num_heads", 8);
  c.num_layers = hf.get_int("num_layers", 6);
  c.num_decoder_layers = hf.get_int("num_decoder_layers", c.num_layers);
  c.relative_attention_num_buckets = hf.get_int("relative_attention_num_buckets", 32);
  c.relative_attention_max_distance = hf.get_int("relative_attention_max_distance", 128);
  c.layer_norm_epsilon = hf.get_float("layer_norm_epsilon", 1e-6);
  c.dropout_rate = hf.get_float("dropout_rate", 0.1);
  c.pad_token_id = hf.get_int("pad_token_id", 0);
  if (hf.has("eos_token_id") && !hf.get_int_list("eos_token_id").empty()) {
    c.eos_token_id = hf.get_int_list("eos_token_id").front();
  }
  c.decoder_start_token_id = hf.get_int("decoder_start_token_id", c.pad_token_id);

  // T5Config.__post_init__: "gated-ACT" or "ACT"; "gated-gelu" means gelu_new for backwards compatibility.
  const std::string proj = hf.get_string("feed_forward_proj", "relu");
  const size_t dash = proj.find('-');
  std::string act = proj;
  if (dash != std::string::npos) {
    if (proj.substr(0, dash) != "gated" || proj.find('-', dash + 1) != std::string::npos) {
      fail(hf.source() + ": feed_forward_proj '" + proj + "' is not of the form 'gated-ACT' or 'ACT'");
    }
    c.gated_act = true;
    act = proj.substr(dash + 1);
  }
  if (proj == "gated-gelu") act = "gelu_new";
  c.dense_act_fn = act;
  c.dense_act = nn::parse_activation(act, hf.source() + ": feed_forward_proj");

  // transformers 5.17 always ties the lm_head slot, and rescales only T5 checkpoints that are not
  // "tie_word_embeddings": false (v1.0 yes; v1.1 / Flan no); MT5ForConditionalGeneration never rescales.
  if (c.model_type == "mt5") {
    c.scale_decoder_outputs = false;
  } else if (hf.has("scale_decoder_outputs")) {
    c.scale_decoder_outputs = hf.get_bool("scale_decoder_outputs");
  } else {
    c.scale_decoder_outputs = hf.get_bool("tie_word_embeddings", true);
  }

  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) fail(hf.source() + ": " + key + " must be positive, got " + std::to_string(v));
  };
  positive("vocab_size", c.vocab_size);
  positive("d_model", c.d_model);
  positive("d_kv", c.d_kv);
  positive("d_ff", c.d_ff);
  positive("num_heads", c.num_heads);
  positive("num_layers", c.num_layers);
  positive("num_decoder_layers", c.num_decoder_layers);
  positive("relative_attention_num_buckets", c.relative_attention_num_buckets);
  positive("relative_attention_max_distance", c.relative_attention_max_distance);
  return c;
}

std::vector<std::pair<std::string, nn::Linear*>> T5Model::named_linears() {
  std::vector<std::pair<std::string, nn::Linear*>> out;
  for (const Slot& s : tensor_table(*this)) {
    // A quantized base has no dense weight but is still a linear (and a parameter, stored by bnb's keys).
    if (s.linear != nullptr && (s.tensor->defined() || s.linear->base.quantized()))
      out.emplace_back(s.name.substr(0, s.name.size() - 7), s.linear);
  }
  return out;
}

std::vector<std::pair<std::string, at::Tensor*>> T5Model::named_parameters() {
  std::vector<std::pair<std::string, at::Tensor*>> out;
  for (const Slot& s : tensor_table(*this)) {
    if (s.linear == &lm_head && tied_lm_head) continue;  // one parameter, listed as shared.weight
    if (s.tensor->defined() || (s.linear != nullptr && s.linear->base.quantized()))
      out.emplace_back(s.name, s.tensor);
  }
  return out;
}

void T5Model::to(at::ScalarType dtype) {
  at::NoGradGuard no_grad;
  std::set<const at::Tensor*> fp32;
  for (T5Stack* s : {&encoder, &decoder}) {
    for (T5Block& b : s->blocks) fp32.insert(&b.ff.wo.base.weight);
  }
  for (auto& [name, tensor] : named_parameters()) {
    if (!tensor->defined()) continue;  // a quantized linear's weight lives in its quant state
    const bool requires_grad = tensor->requires_grad();
    // from_pretrained keeps _keep_in_fp32_modules in float32 for fp16 loads only (bf16 has the range).
    const at::ScalarType to_type = dtype == at::kHalf && fp32.count(tensor) ? at::kFloat : dtype;
    *tensor = tensor->to(to_type).set_requires_grad(requires_grad);
  }
  if (tied_lm_head) lm_head.base.weight = shared;
  if (dtype == at::kHalf) {
    log::warn(
        "t5: fp16 compute overflows in T5's feed-forward (huggingface/transformers#9295); hidden states "
        "are clamped as transformers does, but bf16 or fp32 is recommended");
  }
}

std::vector<T5TensorInfo> t5_tensor_table(const T5Config& config) {
  T5Model m = skeleton(config);
  std::vector<T5TensorInfo> out;
  for (const Slot& s : tensor_table(m)) out.push_back({s.name, s.shape, s.optional});
  return out;
}

T5Model load_t5(const std::string& dir, T5LoadReport* report) {
  return load_t5(T5Config::from_hf_config(HfConfig::load(dir)), dir, report);
}

T5Model load_t5(const T5Config& config, const std::string& checkpoint_path, T5LoadReport* report) {
  const Checkpoint ckpt = open_checkpoint(checkpoint_path);
  T5Model m = skeleton(config);
  std::set<std::string> used;
  for (const Slot& s : tensor_table(m)) {
    if (!ckpt.contains(s.name)) {
      if (s.optional) continue;
      fail(ckpt.path() + ": missing tensor '" + s.name + "'");
    }
    const std::string module = s.name.substr(0, s.name.size() - std::string(".weight").size());
    if (s.linear != nullptr && read_prequantized(ckpt, module, s.shape, std::nullopt, s.linear->base, &used))
      continue;
    *s.tensor = ckpt.tensor(s.name, s.shape).clone();  // own the memory rather than alias the file mapping
    used.insert(s.name);
  }
  if (!m.lm_head.base.weight.defined()) {
    m.lm_head.base.weight = m.shared;
    m.tied_lm_head = true;
  }
  T5LoadReport local;
  for (const std::string& name : ckpt.names()) {
    if (used.count(name)) continue;
    if (name == "encoder.embed_tokens.weight" || name == "decoder.embed_tokens.weight") {
      // Tied aliases of shared.weight that some checkpoints store.
      if (!at::equal(ckpt.tensor(name), m.shared)) {
        fail(ckpt.path() + ": tensor '" + name + "' differs from shared.weight (T5 ties them)");
      }
      local.ignored.push_back(name);
    } else if (name == "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight") {
      local.ignored.push_back(name);  // _keys_to_ignore_on_load_unexpected: cross-attention has no bias
    } else {
      local.unused.push_back(name);
    }
  }
  if (!local.unused.empty()) {
    std::string names;
    for (const std::string& n : local.unused) names += (names.empty() ? "" : ", ") + n;
    log::warn(ckpt.path() + ": tensors not used by the T5 model: " + names);
  }
  if (m.dtype() == at::kHalf) {
    log::warn(ckpt.path() +
              ": T5 in fp16 overflows in the feed-forward (huggingface/transformers#9295); "
              "hidden states are clamped as transformers does, but bf16 or fp32 is recommended");
  }
  if (report != nullptr) *report = std::move(local);
  return m;
}

at::Tensor relative_position_bucket(const at::Tensor& rel, bool bidirectional, int64_t num_buckets,
                                    int64_t max_distance) {
  at::Tensor buckets = at::zeros_like(rel, rel.options().dtype(at::kLong));
  at::Tensor r = rel.to(at::kLong);
  if (bidirectional) {
    num_buckets /= 2;
    buckets = buckets + (r > 0).to(at::kLong) * num_buckets;
    r = r.abs();
  } else {
    r = -at::minimum(r, at::zeros_like(r));
  }
  const int64_t max_exact = num_buckets / 2;
  // Same float32 ops as transformers, so that the exact boundaries (16, 32, 64) land identically.
  at::Tensor large = (at::log(r.to(at::kFloat) / static_cast<double>(max_exact)) /
                      std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)) *
                      static_cast<double>(num_buckets - max_exact))
                         .to(at::kLong) +
                     max_exact;
  large = at::minimum(large, at::full_like(large, num_buckets - 1));
  return buckets + at::where(r < max_exact, r, large);
}

at::Tensor encode(const T5Model& model, const at::Tensor& input_ids, const at::Tensor& attention_mask,
                  const nn::ForwardContext& ctx) {
  const T5Config& c = model.config;
  if (!input_ids.defined() || input_ids.dim() != 2) fail("t5 encode: input_ids must be [B, S]");
  const at::Tensor mask = attention_mask.defined() ? attention_mask : at::ones_like(input_ids);
  if (mask.sizes() != input_ids.sizes()) fail("t5 encode: attention_mask shape differs from input_ids");
  const int64_t S = input_ids.size(1);

  at::Tensor x = nn::dropout(at::embedding(model.shared, input_ids), c.dropout_rate, ctx);  // [B, S, C]
  const at::Tensor key_mask = nn::padding_mask_bias(mask, x.scalar_type());                 // [B, 1, 1, S]
  const at::Tensor bias =
      position_bias(model, model.encoder, S, S, 0, /*bidirectional=*/true);  // [1, H, S, S]
  for (const T5Block& b : model.encoder.blocks) {
    // One block: {x [B, S, C], position bias [1, H, S, S]} -> [B, S, C]. The bias is computed once,
    // outside the blocks, and passed as an input: it carries gradients when relative_attention_bias
    // trains. `key_mask` is a constant of the inputs (by value: the recompute runs after return).
    const auto block = [&model, &b, key_mask, ctx](const std::vector<at::Tensor>& in) {
      const T5Config& c = model.config;
      const at::Tensor& x = in[0];
      const int64_t H = c.num_heads;
      const at::Tensor h = rms_norm(x, b.self_norm, c.layer_norm_epsilon);
      const T5Attention& a = b.self_attention;
      const at::Tensor o = nn::merge_heads(attend(heads(nn::lora_linear(h, a.q, ctx), H),
                                                  heads(nn::lora_linear(h, a.k, ctx), H),
                                                  heads(nn::lora_linear(h, a.v, ctx), H), in[1], key_mask,
                                                  c.dropout_rate, c.attn_implementation, ctx));
      const at::Tensor y = clamp_fp16(x + nn::dropout(nn::lora_linear(o, a.o, ctx), c.dropout_rate, ctx));
      return ff_sublayer(y, model, b, ctx);
    };
    // The model must outlive the backward pass, as it does in training.
    x = checkpointing(ctx) ? nn::checkpoint_block(block, {x, bias}, ctx) : block({x, bias});
  }
  return nn::dropout(rms_norm(x, model.encoder.final_norm, c.layer_norm_epsilon), c.dropout_rate, ctx);
}

T5CrossKV T5CrossKV::index_rows(const at::Tensor& rows) const {
  T5CrossKV out;
  for (size_t i = 0; i < k.size(); ++i) {
    out.k.push_back(k[i].index_select(0, rows));
    out.v.push_back(v[i].index_select(0, rows));
  }
  return out;
}

T5CrossKV precompute_cross_kv(const T5Model& model, const at::Tensor& encoder_hidden,
                              const nn::ForwardContext& ctx) {
  T5CrossKV cross;
  for (const T5Block& b : model.decoder.blocks) {
    cross.k.push_back(
        heads(nn::lora_linear(encoder_hidden, b.cross_attention.k, ctx), model.config.num_heads));
    cross.v.push_back(
        heads(nn::lora_linear(encoder_hidden, b.cross_attention.v, ctx), model.config.num_heads));
  }
  return cross;
}

void T5KVCache::reorder(const at::Tensor& rows) {
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = k[i].index_select(0, rows);
    v[i] = v[i].index_select(0, rows);
  }
}

namespace {

// The decoder over new tokens up to its final norm (and dropout): [B, T, C]; `cache` nullptr in training
// (seq2seq_forward): nothing cached, and the blocks may be checkpointed.
at::Tensor decode_hidden(const T5Model& model, const at::Tensor& decoder_input_ids, T5KVCache* cache,
                         const T5CrossKV& cross, const at::Tensor& encoder_mask,
                         const nn::ForwardContext& ctx) {
  const T5Config& c = model.config;
  if (!decoder_input_ids.defined() || decoder_input_ids.dim() != 2) {
    fail("t5 decode_step: decoder_input_ids must be [B, T]");
  }
  if (cross.k.size() != model.decoder.blocks.size()) {
    fail("t5 decode_step: cross K/V has " + std::to_string(cross.k.size()) + " layers, the decoder " +
         std::to_string(model.decoder.blocks.size()));
  }
  const int64_t B = decoder_input_ids.size(0), T = decoder_input_ids.size(1);
  const int64_t past = cache != nullptr ? cache->length() : 0, total = past + T, S = cross.k.front().size(2);

  at::Tensor x =
      nn::dropout(at::embedding(model.shared, decoder_input_ids), c.dropout_rate, ctx);  // [B, T, C]
  const at::ScalarType dtype = x.scalar_type();
  // Causal mask over the cached and new tokens: query t (at past + t) sees keys 0 .. past + t.
  const at::Tensor future = at::ones({T, total}, x.options().dtype(at::kBool)).triu(past + 1);
  const at::Tensor causal =
      at::zeros({T, total}, x.options()).masked_fill(future, nn::dtype_lowest(dtype));  // [T, past+T]
  const at::Tensor enc_mask = nn::padding_mask_bias(
      encoder_mask.defined() ? encoder_mask : at::ones({B, S}, x.options().dtype(at::kLong)),
      dtype);  // [B, 1, 1, S]
  const at::Tensor bias = position_bias(model, model.decoder, T, total, past, /*bidirectional=*/false);
  const bool first = cache != nullptr && cache->k.empty();
  for (size_t i = 0; i < model.decoder.blocks.size(); ++i) {
    // One block: {x [B, T, C], position bias [1, H, T, past+T], cross K, cross V [B, H, S, D]} ->
    // [B, T, C]. Cross K / V come from the encoder output, which trains the encoder (and the cross
    // k / v LoRA): inputs, not captures. The masks are constants (by value: the recompute runs later).
    const auto block = [&model, i, cache, first, causal, enc_mask, ctx](const std::vector<at::Tensor>& in) {
      const T5Config& c = model.config;
      const T5Block& b = model.decoder.blocks[i];
      const int64_t H = c.num_heads;
      const T5Attention& sa = b.self_attention;
      at::Tensor h = rms_norm(in[0], b.self_norm, c.layer_norm_epsilon);
      at::Tensor k = heads(nn::lora_linear(h, sa.k, ctx), H);  // [B, H, T, D]
      at::Tensor v = heads(nn::lora_linear(h, sa.v, ctx), H);
      if (cache != nullptr && first) {
        cache->k.push_back(k);
        cache->v.push_back(v);
      } else if (cache != nullptr) {
        cache->k[i] = k = at::cat({cache->k[i], k}, 2);  // [B, H, past + T, D]
        cache->v[i] = v = at::cat({cache->v[i], v}, 2);
      }
      at::Tensor o = attend(heads(nn::lora_linear(h, sa.q, ctx), H), k, v, in[1], causal, c.dropout_rate,
                            c.attn_implementation, ctx);
      at::Tensor x = clamp_fp16(
          in[0] + nn::dropout(nn::lora_linear(nn::merge_heads(o), sa.o, ctx), c.dropout_rate, ctx));

      const T5Attention& ca = b.cross_attention;
      h = rms_norm(x, b.cross_norm, c.layer_norm_epsilon);
      o = attend(heads(nn::lora_linear(h, ca.q, ctx), H), in[2], in[3], {}, enc_mask, c.dropout_rate,
                 c.attn_implementation, ctx);
      x = clamp_fp16(x + nn::dropout(nn::lora_linear(nn::merge_heads(o), ca.o, ctx), c.dropout_rate, ctx));
      return ff_sublayer(x, model, b, ctx);
    };
    const std::vector<at::Tensor> in{x, bias, cross.k[i], cross.v[i]};
    // Never with a cache: the recompute would append to it twice. The model outlives the backward.
    x = cache == nullptr && checkpointing(ctx) ? nn::checkpoint_block(block, in, ctx) : block(in);
  }
  return nn::dropout(rms_norm(x, model.decoder.final_norm, c.layer_norm_epsilon), c.dropout_rate, ctx);
}

}  // namespace

at::Tensor output_head(const T5Model& model, const at::Tensor& hidden, const nn::ForwardContext& ctx) {
  const at::Tensor x = model.config.scale_decoder_outputs
                           ? hidden * std::pow(static_cast<double>(model.config.d_model), -0.5)
                           : hidden;
  return nn::lora_linear(x, model.lm_head, ctx);  // [..., V]
}

at::Tensor decode_step(const T5Model& model, const at::Tensor& decoder_input_ids, T5KVCache& cache,
                       const T5CrossKV& cross, const at::Tensor& encoder_mask,
                       const nn::ForwardContext& ctx) {
  return output_head(model, decode_hidden(model, decoder_input_ids, &cache, cross, encoder_mask, ctx), ctx);
}

at::Tensor shift_right(const at::Tensor& labels, const T5Config& config) {
  if (!labels.defined() || labels.dim() != 2) fail("t5 shift_right: labels must be [B, T]");
  at::Tensor shifted = at::zeros_like(labels);
  shifted.narrow(1, 1, labels.size(1) - 1).copy_(labels.narrow(1, 0, labels.size(1) - 1));
  shifted.select(1, 0).fill_(config.decoder_start_token_id);
  return shifted.masked_fill_(shifted == -100, config.pad_token_id);
}

at::Tensor seq2seq_hidden_states(const T5Model& model, const Seq2SeqInputs& inputs,
                                 const nn::ForwardContext& ctx) {
  at::Tensor decoder_ids = inputs.decoder_input_ids;
  if (!decoder_ids.defined()) {
    if (!inputs.labels.defined()) fail("t5 seq2seq_forward: neither labels nor decoder_input_ids given");
    decoder_ids = shift_right(inputs.labels, model.config);
  }
  const at::Tensor hidden = encode(model, inputs.input_ids, inputs.attention_mask, ctx);
  return decode_hidden(model, decoder_ids, nullptr, precompute_cross_kv(model, hidden, ctx),
                       inputs.attention_mask, ctx);
}

Seq2SeqOutput seq2seq_forward(const T5Model& model, const Seq2SeqInputs& inputs,
                              const nn::ForwardContext& ctx) {
  Seq2SeqOutput out;
  out.logits = output_head(model, seq2seq_hidden_states(model, inputs, ctx), ctx);
  if (inputs.labels.defined()) {
    const int64_t V = out.logits.size(-1);
    out.loss = at::cross_entropy_loss(out.logits.reshape({-1, V}), inputs.labels.reshape({-1}).to(at::kLong),
                                      {}, at::Reduction::Mean, -100);
  }
  return out;
}

}  // namespace qlora::models
