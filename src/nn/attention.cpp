#include "qlora/nn/attention.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

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

at::Tensor eager_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& bias, double dropout_p, const ForwardContext& ctx) {
  // transformers multiplies by head_dim**-0.5 (a Python float) rather than dividing by sqrt(D).
  const double scaling = std::pow(static_cast<double>(q.size(-1)), -0.5);
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1)) * scaling;  // [B, H, T, T]
  if (bias.defined()) scores = scores + bias;
  const at::Tensor probs = dropout(at::softmax(scores, -1), dropout_p, ctx);
  return at::matmul(probs, v);
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
