#include "qlora/train/adamw8bit.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "qlora/core/error.h"

namespace qlora::train {

at::Tensor bnb_dynamic_map(bool is_signed) {
  // create_dynamic_map(signed, max_exponent_bits=7, total_bits=8): for exponent i the fraction
  // values are midpoints of linspace(0.1, 1) scaled by 10^(i-6); no "additional items" at 8 bits.
  constexpr int max_exponent_bits = 7, non_sign_bits = 7;
  std::vector<float> data;
  for (int i = 0; i < max_exponent_bits; ++i) {
    const int64_t items = is_signed ? (int64_t{1} << (i + non_sign_bits - max_exponent_bits)) + 1
                                    : (int64_t{1} << (i + non_sign_bits - max_exponent_bits + 1)) + 1;
    const at::Tensor b = at::linspace(0.1, 1, items, at::kFloat);
    const at::Tensor means = (b.slice(0, 0, items - 1) + b.slice(0, 1)) / 2.0;
    const double scale = std::pow(10.0, static_cast<double>(i - (max_exponent_bits - 1)));
    for (const at::Tensor& t : is_signed ? std::vector<at::Tensor>{means * scale, means * -scale}
                                         : std::vector<at::Tensor>{means * scale}) {
      const at::Tensor c = t.contiguous();
      data.insert(data.end(), c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
    }
  }
  data.push_back(0.0f);
  data.push_back(1.0f);
  data.resize(256, 0.0f);
  std::sort(data.begin(), data.end());
  return at::tensor(data, at::kFloat);
}

namespace {

constexpr int64_t kLutSize = 65536;

// bnb 0.50's CPU quantizer (csrc/cpu_ops.cpp build_quantize_lut): the normalized range [-1, 1] is
// cut into 65536 bins and each bin maps to the number of code midpoints below its left edge. This is
// not exactly nearest-code rounding, so a plain bucketize would differ on a few elements per block.
std::vector<uint8_t> quantize_lut(const at::Tensor& code) {
  const at::Tensor c = code.to(at::kCPU, at::kFloat).contiguous();
  if (c.numel() != 256) fail("quantize_blockwise: the code must have 256 entries");
  const float* cb = c.data_ptr<float>();
  float midpoints[255];
  for (int i = 0; i < 255; ++i) midpoints[i] = 0.5f * (cb[i] + cb[i + 1]);
  std::vector<uint8_t> lut(kLutSize);
  int code_idx = 0;
  for (int64_t i = 0; i < kLutSize; ++i) {
    const float val = -1.0f + (2.0f * static_cast<float>(i)) / static_cast<float>(kLutSize - 1);
    while (code_idx < 255 && midpoints[code_idx] < val) ++code_idx;
    lut[static_cast<size_t>(i)] = static_cast<uint8_t>(code_idx);
  }
  return lut;
}

// norm_to_lut_index; bnb compiles it for avx2+fma, where GCC contracts the final multiply-add.
inline size_t lut_index(float v) {
  v = std::clamp(v, -1.0f, 1.0f);
  return static_cast<uint16_t>(std::fma((v + 1.0f) * 0.5f, static_cast<float>(kLutSize - 1), 0.5f));
}

}  // namespace

BlockwiseCodes quantize_blockwise(const at::Tensor& x, const at::Tensor& code) {
  // On the host, as bnb's CPU kernel: per block absmax = max |x|, v = x * (1 / absmax), code = lut[v].
  const at::Tensor flat = x.reshape({-1}).to(at::kCPU, at::kFloat).contiguous();
  const int64_t n = flat.numel(), blocks = (n + kBnbBlockSize - 1) / kBnbBlockSize;
  const std::vector<uint8_t> lut = quantize_lut(code);
  at::Tensor codes = at::empty({n}, at::kByte), absmax = at::empty({blocks}, at::kFloat);
  const float* a = flat.data_ptr<float>();
  uint8_t* out = codes.data_ptr<uint8_t>();
  float* am = absmax.data_ptr<float>();
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t begin = b * kBnbBlockSize, end = std::min(begin + kBnbBlockSize, n);
      float m = 0.0f;
      for (int64_t i = begin; i < end; ++i) m = std::max(m, std::fabs(a[i]));
      am[b] = m;
      if (m == 0.0f) {
        std::fill(out + begin, out + end, uint8_t{0});
        continue;
      }
      const float inv = 1.0f / m;
      for (int64_t i = begin; i < end; ++i) out[i] = lut[lut_index(a[i] * inv)];
    }
  });
  return {codes.reshape(x.sizes()).to(x.device()), absmax.to(x.device())};
}

at::Tensor dequantize_blockwise(const at::Tensor& codes, const at::Tensor& absmax, const at::Tensor& code) {
  const int64_t n = codes.numel();
  const int64_t blocks = (n + kBnbBlockSize - 1) / kBnbBlockSize;
  if (absmax.numel() != blocks) fail("dequantize_blockwise: absmax does not have one entry per block of 256");
  const at::Tensor values = code.index_select(0, codes.reshape({-1}).to(at::kLong));  // [n]
  const at::Tensor per_element = absmax.repeat_interleave(kBnbBlockSize).slice(0, 0, n);
  return (values * per_element).reshape(codes.sizes());
}

void adam_update_8bit_blockwise(at::Tensor& p, const at::Tensor& grad, BlockwiseCodes& exp_avg,
                                BlockwiseCodes& exp_avg_sq, const Adam8bitHyper& h) {
  at::NoGradGuard no_grad;
  const at::Tensor qmap1 = bnb_dynamic_map(true).to(p.device());
  const at::Tensor qmap2 = bnb_dynamic_map(false).to(p.device());
  at::Tensor s1 = dequantize_blockwise(exp_avg.codes, exp_avg.absmax, qmap1);
  at::Tensor s2 = dequantize_blockwise(exp_avg_sq.codes, exp_avg_sq.absmax, qmap2);
  const at::Tensor g = grad.to(at::kFloat) * 1.0;  // gnorm_scale 1 (percentile clipping off)
  at::Tensor p32 = p.to(at::kFloat);
  s1.mul_(h.beta1).add_(g, 1.0 - h.beta1);
  s2.mul_(h.beta2).addcmul_(g, g, 1.0 - h.beta2);
  const double correction1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
  const double correction2 = std::sqrt(1.0 - std::pow(h.beta2, static_cast<double>(h.step)));
  const at::Tensor denom = (s2.sqrt() / correction2).add_(h.eps);
  if (h.weight_decay > 0.0) p32.mul_(1.0 - h.lr * h.weight_decay);
  p32.addcdiv_(s1, denom, -h.lr / correction1);
  if (!p32.is_same(p)) p.copy_(p32);
  exp_avg = quantize_blockwise(s1, qmap1);
  exp_avg_sq = quantize_blockwise(s2, qmap2);
}

void adam_update_32bit_bnb(at::Tensor& p, const at::Tensor& grad, at::Tensor& exp_avg, at::Tensor& exp_avg_sq,
                           const Adam8bitHyper& h) {
  at::NoGradGuard no_grad;
  const at::Tensor g = grad.to(at::kFloat) * 1.0;
  at::Tensor p32 = p.to(at::kFloat);
  exp_avg.mul_(h.beta1).add_(g, 1.0 - h.beta1);
  exp_avg_sq.mul_(h.beta2).addcmul_(g, g, 1.0 - h.beta2);
  const double correction1 = 1.0 - std::pow(h.beta1, static_cast<double>(h.step));
  const double correction2 = std::sqrt(1.0 - std::pow(h.beta2, static_cast<double>(h.step)));
  const double step_size = -h.lr * correction2 / correction1;
  if (h.weight_decay > 0.0) p32.mul_(1.0 - h.lr * h.weight_decay);
  const at::Tensor update = exp_avg / (exp_avg_sq.sqrt() + h.eps * correction2);
  p32.add_(update, step_size * 1.0);  // update_scale 1 (no max_unorm)
  if (!p32.is_same(p)) p.copy_(p32);
}

}  // namespace qlora::train
