// Scaled dot-product attention in transformers' "eager" form, shared by the encoder models.
#pragma once

#include <ATen/core/Tensor.h>

#include "qlora/nn/lora_linear.h"

namespace qlora::nn {

// torch.finfo(dtype).min: the value HF masks fill with (fp32, fp64, fp16, bf16; Error otherwise).
double dtype_lowest(at::ScalarType dtype);

// The additive key mask of HF encoders: (1 - mask) * finfo(dtype).min, so a masked key gets the
// most negative finite value rather than -inf (a fully masked row then softmaxes to uniform, not NaN).
// mask: [B, T] of 0/1 (any integer or float type) -> [B, 1, 1, T] in `dtype`.
at::Tensor padding_mask_bias(const at::Tensor& mask, at::ScalarType dtype);

// softmax(Q K^T * D^-0.5 + bias) with dropout on the probabilities (training only), then @ V.
// q, k, v: [B, H, T, D]; bias: broadcastable to [B, H, T, T], or undefined -> [B, H, T, D].
at::Tensor eager_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& bias, double dropout_p, const ForwardContext& ctx);

// [B, T, H*D] <-> [B, H, T, D].
at::Tensor split_heads(const at::Tensor& x, int64_t heads);
at::Tensor merge_heads(const at::Tensor& x);

}  // namespace qlora::nn
