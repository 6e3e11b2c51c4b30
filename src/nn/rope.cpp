#include "qlora/nn/rope.h"

#include <ATen/ATen.h>

#include <cmath>
#include <string>

#include "qlora/core/error.h"

namespace qlora::nn {

RopeType parse_rope_type(const std::string& name, const std::string& where) {
  if (name == "default") return RopeType::kDefault;
  if (name == "linear") return RopeType::kLinear;
  if (name == "dynamic") return RopeType::kDynamic;
  if (name == "llama3") return RopeType::kLlama3;
  fail(where + ": rope_type '" + name + "' is not supported (default, linear, dynamic, llama3)");
}

at::Tensor rope_inv_freq(const RopeConfig& c, int64_t seq_len) {
  if (c.dim <= 0 || c.dim % 2 != 0) fail("rope_inv_freq: rotary dim must be positive and even");
  // Same op sequence as transformers so the fp32 roundings agree:
  // 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)).
  const at::Tensor exponent = at::arange(0, c.dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(c.dim);
  switch (c.type) {
    case RopeType::kDefault:
      return 1.0 / at::pow(c.theta, exponent);
    case RopeType::kLinear:
      return (1.0 / at::pow(c.theta, exponent)) / c.factor;
    case RopeType::kDynamic: {
      // Only past max_position_embeddings: base * ((factor * L / max) - (factor - 1)) ** (dim / (dim - 2)),
      // with L a tensor in transformers, so the new base is an fp32 scalar tensor.
      if (seq_len <= c.max_position_embeddings) return 1.0 / at::pow(c.theta, exponent);
      const at::Tensor len = at::scalar_tensor(seq_len, at::kLong);
      const at::Tensor ratio =
          len * c.factor / static_cast<double>(c.max_position_embeddings) - (c.factor - 1);
      const at::Tensor base = ratio.pow(static_cast<double>(c.dim) / (c.dim - 2)) * c.theta;
      return 1.0 / at::pow(base, exponent);
    }
    case RopeType::kLlama3: {
      const at::Tensor inv = 1.0 / at::pow(c.theta, exponent);
      const double low_wavelen = static_cast<double>(c.original_max_position_embeddings) / c.low_freq_factor;
      const double high_wavelen =
          static_cast<double>(c.original_max_position_embeddings) / c.high_freq_factor;
      const at::Tensor wavelen = 2 * M_PI / inv;
      at::Tensor scaled = at::where(wavelen > low_wavelen, inv / c.factor, inv);
      const at::Tensor smooth =
          (static_cast<double>(c.original_max_position_embeddings) / wavelen - c.low_freq_factor) /
          (c.high_freq_factor - c.low_freq_factor);
      const at::Tensor smoothed = (1 - smooth) * scaled / c.factor + smooth * scaled;
      const at::Tensor medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
      return at::where(medium, smoothed, scaled);
    }
  }
  fail("rope_inv_freq: unknown rope type");
}

RopeTables rope_tables(const RopeConfig& c, const at::Tensor& position_ids, at::ScalarType dtype) {
  if (position_ids.dim() != 2) fail("rope_tables: position_ids must be [B, T]");
  const int64_t B = position_ids.size(0);
  // Only dynamic NTK scaling depends on the longest position; reading it is a device-to-host sync, which
  // the other rope types must not pay on every decode step on a GPU.
  const bool dynamic = c.type == RopeType::kDynamic;
  const int64_t seq_len = dynamic && position_ids.numel() ? position_ids.max().item<int64_t>() + 1 : 0;
  const at::Tensor inv = rope_inv_freq(c, seq_len).to(position_ids.device());
  // [B, dim/2, 1] @ [B, 1, T] -> [B, dim/2, T] -> [B, T, dim/2], in fp32 (autocast off in transformers).
  const at::Tensor freqs =
      at::matmul(inv.view({1, -1, 1}).expand({B, -1, 1}), position_ids.unsqueeze(1).to(at::kFloat))
          .transpose(1, 2);
  const at::Tensor emb = at::cat({freqs, freqs}, -1);  // [B, T, dim]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

at::Tensor apply_rope(const at::Tensor& x, const RopeTables& t) {
  const int64_t half = x.size(-1) / 2;
  const at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  const at::Tensor cos = t.cos.unsqueeze(1), sin = t.sin.unsqueeze(1);  // [B, 1, T, D]
  return x * cos + rotated * sin;
}

}  // namespace qlora::nn
