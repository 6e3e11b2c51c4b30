// Scaled dot-product attention, shared by every family: transformers' "eager" form (the reference the
// parity fixtures were made with) or at::scaled_dot_product_attention ("sdpa": the fused CPU kernel,
// CUDA's memory-efficient kernel), chosen per model by AttnImplementation.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "qlora/nn/lora_linear.h"

namespace qlora::nn {

// transformers' attn_implementation names. Models default to kEager (the form the parity fixtures
// were made with); the run config (model.attn_implementation), `infer` and `eval` default to kSdpa.
enum class AttnImplementation { kEager, kSdpa };

// "eager" / "sdpa" -> the value; anything else is an Error naming `key` and the valid choices.
AttnImplementation parse_attn_implementation(const std::string& value, const std::string& key);
const char* attn_implementation_name(AttnImplementation impl);

// Whether a call runs through SDPA: `impl` is kSdpa and no attention dropout is drawn. With dropout the
// eager form runs even under kSdpa, because SDPA's dropout draws from torch's global generator: it
// would ignore ctx.generator (seeded runs, resume) and could not be replayed by nn::checkpoint_block's
// recompute, which restores only that generator's state.
bool use_sdpa(AttnImplementation impl, double dropout_p, const ForwardContext& ctx);

// at::scaled_dot_product_attention(q, k, v, attn_mask = bias, dropout 0, is_causal false, scale).
// q: [B, H, Tq, D]; k, v: [B, Hkv, Tk, D] with H a multiple of Hkv (kv head j serves q heads
// j*H/Hkv .. (j+1)*H/Hkv - 1, transformers' repeat_kv); bias: additive, broadcastable to
// [B, H, Tq, Tk], or undefined. Masked keys must carry a large finite negative (finfo.min), never
// -inf: a query with no allowed key (a left pad) then gets uniform weights as in eager, not NaN. The
// bias is cast to the dtype SDPA computes in (autocast's, else q's) with finfo.min kept finite.
// -> [B, H, Tq, D].
at::Tensor sdpa_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& bias, double scale);

// torch.finfo(dtype).min: the value HF masks fill with (fp32, fp64, fp16, bf16; Error otherwise).
double dtype_lowest(at::ScalarType dtype);

// The additive key mask of HF encoders: (1 - mask) * finfo(dtype).min, so a masked key gets the
// most negative finite value rather than -inf (a fully masked row then softmaxes to uniform, not NaN).
// mask: [B, T] of 0/1 (any integer or float type) -> [B, 1, 1, T] in `dtype`.
at::Tensor padding_mask_bias(const at::Tensor& mask, at::ScalarType dtype);

// softmax(Q K^T * scale + bias) with dropout on the probabilities (training only), then @ V.
// q, k, v: [B, H, T, D]; bias: broadcastable to [B, H, T, T], or undefined -> [B, H, T, D].
// scale: transformers' head_dim**-0.5 unless given.
at::Tensor eager_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& bias, double dropout_p, const ForwardContext& ctx);
at::Tensor eager_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& bias, double dropout_p, double scale, const ForwardContext& ctx);

// The shared dispatch of the encoders: eager_attention with `scale` or sdpa_attention (see use_sdpa).
// Decoders whose eager form differs (LLaMA's float32 softmax, MPT's masked_fill, T5's unscaled
// scores) keep their own eager code and call sdpa_attention when use_sdpa says so.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& bias,
                     double dropout_p, double scale, AttnImplementation impl, const ForwardContext& ctx);

// [B, T, H*D] <-> [B, H, T, D].
at::Tensor split_heads(const at::Tensor& x, int64_t heads);
at::Tensor merge_heads(const at::Tensor& x);

}  // namespace qlora::nn
