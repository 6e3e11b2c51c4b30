#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/nf4_layout.h"
#include "qlora/core/error.h"
#include "qlora/quant/nf4.h"

namespace qlora::quant {

namespace {

void check_blocksize(int64_t blocksize, const char* where) {
  if (!nf4::valid_blocksize(blocksize)) {
    fail(std::string(where) + ": blocksize " + std::to_string(blocksize) +
         " is not one of 32, 64, 128, 256, 512, 1024, 2048, 4096");
  }
}

float code_value(QuantType type, uint8_t code) {
  return type == QuantType::kNf4 ? nf4::kCodebook[code] : nf4::fp4_value(code);
}

}  // namespace

void nf4_dequantize_f32_reference(const uint8_t* packed, const float* absmax, float* out, int64_t n,
                                  int64_t blocksize) {
  check_blocksize(blocksize, "NF4 dequantize");
  for (int64_t i = 0; i < n; ++i) {
    out[i] = nf4::kCodebook[nf4::code_at(packed, i)] * absmax[i / blocksize];
  }
}

void quantize_4bit_reference(const void* input, FloatType in_type, int64_t n, int64_t blocksize,
                             QuantType quant_type, uint8_t* packed, float* absmax) {
  check_blocksize(blocksize, "quantize_4bit");
  const int64_t blocks = nf4::num_blocks(n, blocksize);
  for (int64_t i = 0; i < nf4::packed_bytes(n); ++i) packed[i] = 0;
  float inv = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * blocksize, end = std::min(n, begin + blocksize);
    float amax = 0.0f;
    for (int64_t i = begin; i < end; ++i) amax = std::fmax(amax, std::fabs(load_float(input, in_type, i)));
    absmax[b] = amax;
    // CUDA multiplies by the reciprocal; an all-zero block gives 0 * inf = NaN, which the trees map to
    // code 0, and that is what CUDA-made checkpoints hold.
    inv = 1.0f / amax;
    for (int64_t i = begin; i < end; ++i) {
      const uint8_t code = nf4::quantize_4bit_value(quant_type, load_float(input, in_type, i) * inv);
      packed[i >> 1] |= (i & 1) ? code : static_cast<uint8_t>(code << 4);
    }
  }
  // The pad nibble: CUDA loads 0.0 past the end and quantizes it with the last block's scale.
  if (n % 2 == 1) packed[n >> 1] |= nf4::quantize_4bit_value(quant_type, 0.0f * inv);
}

void dequantize_4bit_reference(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize,
                               QuantType quant_type, void* out, FloatType out_type) {
  check_blocksize(blocksize, "dequantize_4bit");
  for (int64_t i = 0; i < n; ++i) {
    store_float(out, out_type, i, code_value(quant_type, nf4::code_at(packed, i)) * absmax[i / blocksize]);
  }
}

std::vector<float> create_dynamic_map(bool is_signed, int max_exponent_bits, int total_bits) {
  // functional.create_dynamic_map: torch.linspace in float32, the means in float32, and the products
  // 10**e * means in float32 too (a Python scalar times a float32 tensor stays float32).
  std::vector<float> data;
  const int non_sign_bits = total_bits - 1;
  const int additional_items = (1 << (non_sign_bits - max_exponent_bits)) - 1;
  auto add_means = [&](int items, int i) {
    // torch.linspace(0.1, 1, items) in float32 as ATen's vectorized kernel computes it: float32 step,
    // start + step*k for the first half and end - step*(n-1-k) for the second, each one fused
    // multiply-add (a single rounding; checked against bnb's map in the tests).
    const float start = 0.1f, end = 1.0f;
    const float step = (end - start) / static_cast<float>(items - 1);
    std::vector<float> boundaries(items);
    const int halfway = items / 2;
    for (int k = 0; k < items; ++k) {
      boundaries[k] = k < halfway ? std::fma(step, static_cast<float>(k), start)
                                  : std::fma(-step, static_cast<float>(items - k - 1), end);
    }
    const float scale = static_cast<float>(std::pow(10.0, -(max_exponent_bits - 1) + i));
    for (int k = 0; k + 1 < items; ++k) {
      const float mean = (boundaries[k] + boundaries[k + 1]) / 2.0f;
      data.push_back(scale * mean);
      if (is_signed) data.push_back(-scale * mean);
    }
  };
  int i = 0;
  for (i = 0; i < max_exponent_bits; ++i) {
    const int fraction_items = is_signed ? (1 << (i + non_sign_bits - max_exponent_bits)) + 1
                                         : (1 << (i + non_sign_bits - max_exponent_bits + 1)) + 1;
    add_means(fraction_items, i);
  }
  if (additional_items > 0) add_means(additional_items + 1, i - 1);
  data.push_back(0.0f);
  data.push_back(1.0f);
  if (static_cast<int>(data.size()) > (1 << total_bits)) fail("create_dynamic_map: too many values");
  data.resize(static_cast<size_t>(1) << total_bits, 0.0f);  // bnb pads with zeros
  std::sort(data.begin(), data.end());
  return data;
}

void double_quant_reference(const float* absmax, int64_t n_blocks, float offset, const float* code,
                            uint8_t* qabsmax, float* nested_absmax) {
  for (int64_t b = 0; b < nf4::num_blocks(n_blocks, nf4::kNestedBlocksize); ++b) {
    const int64_t begin = b * nf4::kNestedBlocksize;
    const int64_t end = std::min(n_blocks, begin + nf4::kNestedBlocksize);
    float amax = 0.0f;
    for (int64_t i = begin; i < end; ++i) amax = std::fmax(amax, std::fabs(absmax[i] - offset));
    nested_absmax[b] = amax;
    const float inv = 1.0f / amax;
    for (int64_t i = begin; i < end; ++i)
      qabsmax[i] = nf4::quantize_dynamic(code, (absmax[i] - offset) * inv);
  }
}

void dequantize_nested_absmax_reference(const uint8_t* qabsmax, const float* nested_absmax, float offset,
                                        const float* code, int64_t n_blocks, float* absmax) {
  for (int64_t i = 0; i < n_blocks; ++i) {
    const float scaled = code[qabsmax[i]] * nested_absmax[i / nf4::kNestedBlocksize];
    absmax[i] = scaled + offset;
  }
}

double bits_per_parameter(int64_t numel, int64_t blocksize, bool double_quant) {
  check_blocksize(blocksize, "bits_per_parameter");
  if (numel <= 0) fail("bits_per_parameter: numel must be positive");
  const int64_t blocks = nf4::num_blocks(numel, blocksize);
  double bits = 8.0 * static_cast<double>(nf4::packed_bytes(numel));
  if (double_quant) {
    bits += 8.0 * blocks + 32.0 * nf4::num_blocks(blocks, nf4::kNestedBlocksize) + 32.0;  // + offset
  } else {
    bits += 32.0 * blocks;
  }
  return bits / static_cast<double>(numel);
}

}  // namespace qlora::quant
