#include "qlora/nn/attention.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

#include <cmath>
#include <limits>
#include <optional>

#include "qlora/core/error.h"

namespace qlora::nn {

double dtype_lowest(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return static_cast<double>(std::numeric_limits<float>::lowest());
    case at::kDouble:
      return std::numeric_limits<double>::lowest();
    case at::kHalf:
      return static_cast<double>(std::numeric_limits<at::Half>::lowest());
    case at::kBFloat16:
      return static_cast<double>(std::numeric_limits<at::BFloat16>::lowest());
    default:
      fail(std::string("attention mask: unsupported dtype ") + c10::toString(dtype));
  }
}

at::Tensor padding_mask_bias(const at::Tensor& mask, at::ScalarType dtype) {
  if (mask.dim() != 2)
    fail("padding_mask_bias: mask must be [B, T], got " + std::to_string(mask.dim()) + " dims");
  const double min = dtype_lowest(dtype);
  const at::Tensor keep = mask.to(dtype).unsqueeze(1).unsqueeze(1);  // [B, 1, 1, T]
  return (1.0 - keep) * min;
}

AttnImplementation parse_attn_implementation(const std::string& value, const std::string& key) {
  if (value == "eager") return AttnImplementation::kEager;
  if (value == "sdpa") return AttnImplementation::kSdpa;
  fail(key + ": '" + value + "' is not one of sdpa, eager (transformers' attn_implementation names)");
}

const char* attn_implementation_name(AttnImplementation impl) {
  return impl == AttnImplementation::kSdpa ? "sdpa" : "eager";
}

bool use_sdpa(AttnImplementation impl, double dropout_p, const ForwardContext& ctx) {
  return impl == AttnImplementation::kSdpa && !(ctx.training && dropout_p > 0.0);
}

at::Tensor eager_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& bias, double dropout_p, const ForwardContext& ctx) {
  // transformers multiplies by head_dim**-0.5 (a Python float) rather than dividing by sqrt(D).
  return eager_attention(q, k, v, bias, dropout_p, std::pow(static_cast<double>(q.size(-1)), -0.5), ctx);
}

at::Tensor eager_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& bias, double dropout_p, double scale,
                           const ForwardContext& ctx) {
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1)) * scale;  // [B, H, T, T]
  if (bias.defined()) scores = scores + bias;
  const at::Tensor probs = dropout(at::softmax(scores, -1), dropout_p, ctx);
  return at::matmul(probs, v);
}

at::Tensor sdpa_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& bias, double scale) {
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) fail("sdpa_attention: q, k, v must be [B, H, T, D]");
  const int64_t H = q.size(1), Hkv = k.size(1);
  if (Hkv <= 0 || H % Hkv != 0 || v.size(1) != Hkv) {
    fail("sdpa_attention: " + std::to_string(H) + " query heads cannot share " + std::to_string(Hkv) +
         " key/value heads");
  }
  // repeat_kv rather than enable_gqa: CUDA's memory-efficient kernel (the one that takes a mask) has
  // no GQA, and transformers' sdpa_attention_forward repeats too whenever a mask is given.
  const at::Tensor kr = Hkv == H ? k : k.repeat_interleave(H / Hkv, 1);  // [B, H, Tk, D]
  const at::Tensor vr = Hkv == H ? v : v.repeat_interleave(H / Hkv, 1);
  std::optional<at::Tensor> mask;  // an undefined tensor is not "no mask" to SDPA: nullopt is
  if (bias.defined()) {
    // SDPA wants the mask in the dtype it computes in. A plain cast of float32's finfo.min to bf16 or
    // fp16 overflows to -inf (NaN rows again), so clamp at the target type's lowest first.
    const at::DeviceType device = q.device().type();
    const at::ScalarType target =
        at::autocast::is_autocast_enabled(device) && at::isFloatingType(q.scalar_type())
            ? at::autocast::get_autocast_dtype(device)
            : q.scalar_type();
    mask = bias.scalar_type() == target ? bias : bias.clamp_min(dtype_lowest(target)).to(target);
  }
  return at::scaled_dot_product_attention(q, kr, vr, mask, 0.0, /*is_causal=*/false, scale);
}

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& bias,
                     double dropout_p, double scale, AttnImplementation impl, const ForwardContext& ctx) {
  if (use_sdpa(impl, dropout_p, ctx)) return sdpa_attention(q, k, v, bias, scale);
  return eager_attention(q, k, v, bias, dropout_p, scale, ctx);
}

at::Tensor split_heads(const at::Tensor& x, int64_t heads) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  if (C % heads != 0)
    fail("split_heads: width " + std::to_string(C) + " is not a multiple of " + std::to_string(heads));
  return x.view({B, T, heads, C / heads}).transpose(1, 2);
}

at::Tensor merge_heads(const at::Tensor& x) {
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3);
  return x.transpose(1, 2).contiguous().view({B, T, H * D});
}

}  // namespace qlora::nn
