// The 4-bit (NF4 and FP4) block layout, codebooks and quantizers of bitsandbytes, defined once for host
// and device code. Bit-compatible with bitsandbytes (../shared/REFERENCE.md A1): two 4-bit codes per
// byte, the FIRST element in the HIGH nibble; one absmax per block of `blocksize` consecutive elements of
// the row-major flattened weight; value = codebook[code] * absmax[i / blocksize], computed in float32.
// Double quantization stores absmax as uint8 codes of bnb's 8-bit dynamic map in blocks of 256.
//
// The quantizers are transcriptions of bitsandbytes' CUDA kernels (csrc/kernels.cu: dQuantizeNF4,
// dQuantizeFP4, dQuantize<0>), not of its CPU backend: checkpoints are made on CUDA, and the CPU backend
// differs in a few documented corner cases (see tools/gen_bnb_fixtures.py).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define QLORA_HOST_DEVICE __host__ __device__
#else
#define QLORA_HOST_DEVICE
#endif

namespace qlora::nf4 {

inline constexpr int kCodes = 16;
inline constexpr int kDefaultBlocksize = 64;
inline constexpr int kZeroCode = 7;           // Padding code of bitsandbytes (0b0111 == 0.0).
inline constexpr int kNestedBlocksize = 256;  // Double quantization block (bnb: quantize_blockwise(256)).
inline constexpr int kDynamicCodes = 256;     // Entries of the 8-bit dynamic map.

// The two 4-bit data types; the values are bnb's kernel DATA_TYPE minus one and are stable.
enum class QuantType : int { kNf4 = 0, kFp4 = 1 };

// bitsandbytes' NF4 table (functional.py get_4bit_type("nf4")), in code order.
#define QLORA_NF4_CODEBOOK                                                                              \
  {                                                                                                     \
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,    \
        -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f, \
        0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,          \
        0.7229568362236023f, 1.0f                                                                       \
  }

// bitsandbytes' FP4 magnitudes (kernels.cu fp4_dequantization_lut), indexed by the low 3 bits; bit 3 is
// the sign. Code 0b1000 is therefore -0.0 on CUDA.
#define QLORA_FP4_MAGNITUDES \
  { 0.0f, 0.005208333333f, 0.66666667f, 1.0f, 0.33333333f, 0.5f, 0.16666667f, 0.25f }

inline constexpr float kCodebook[kCodes] = QLORA_NF4_CODEBOOK;
inline constexpr float kFp4Magnitudes[8] = QLORA_FP4_MAGNITUDES;
static_assert(kCodebook[kZeroCode] == 0.0f, "code 7 must be exactly zero");
static_assert(kCodebook[0] == -1.0f && kCodebook[15] == 1.0f, "codebook spans [-1, 1]");
static_assert(kFp4Magnitudes[0] == 0.0f && kFp4Magnitudes[3] == 1.0f, "FP4 spans [-1, 1]");

// Allowed blocksizes, as bitsandbytes' quantize_4bit accepts.
QLORA_HOST_DEVICE constexpr bool valid_blocksize(int64_t blocksize) {
  return blocksize == 32 || blocksize == 64 || blocksize == 128 || blocksize == 256 || blocksize == 512 ||
         blocksize == 1024 || blocksize == 2048 || blocksize == 4096;
}

// Code of element i in a packed buffer.
QLORA_HOST_DEVICE inline uint8_t code_at(const uint8_t* packed, int64_t i) {
  const uint8_t byte = packed[i >> 1];
  return (i & 1) ? static_cast<uint8_t>(byte & 0x0F) : static_cast<uint8_t>(byte >> 4);
}

QLORA_HOST_DEVICE constexpr int64_t packed_bytes(int64_t n) { return (n + 1) / 2; }
QLORA_HOST_DEVICE constexpr int64_t num_blocks(int64_t n, int64_t blocksize) {
  return (n + blocksize - 1) / blocksize;
}

// FP4 value of a code: magnitude times the sign of bit 3 (code 0b1000 is -0.0), as dDequantizeFP4Tree.
QLORA_HOST_DEVICE inline float fp4_value(uint8_t code) {
  constexpr float magnitudes[8] = QLORA_FP4_MAGNITUDES;
  const float sign = 1.0f - 2.0f * static_cast<float>((code & 0x8) >> 3);
  return magnitudes[code & 0x7] * sign;
}

// dQuantizeNF4: a tree over the codebook midpoints; a tie goes to the lower code and NaN (an all-zero
// block, 0 * (1/0)) falls through to code 0, as on CUDA.
QLORA_HOST_DEVICE inline uint8_t quantize_nf4(float x) {
  if (x > 0.03979014977812767f) {
    if (x > 0.3893125355243683f) {
      if (x > 0.6427869200706482f) return x > 0.8614784181118011f ? 0b1111 : 0b1110;
      return x > 0.5016634166240692f ? 0b1101 : 0b1100;
    }
    if (x > 0.2035212516784668f) return x > 0.2920137718319893f ? 0b1011 : 0b1010;
    return x > 0.1202552504837513f ? 0b1001 : 0b1000;
  }
  if (x > -0.33967943489551544f) {
    if (x > -0.13791173323988914f) return x > -0.045525018125772476f ? 0b0111 : 0b0110;
    return x > -0.23460740596055984f ? 0b0101 : 0b0100;
  }
  if (x > -0.6106329262256622f) return x > -0.4599952697753906f ? 0b0011 : 0b0010;
  return x > -0.8480964004993439f ? 0b0001 : 0b0000;
}

// dQuantizeFP4: the sign bit comes from x (so tiny negatives give 0b1000), the tree runs on |x| with
// bnb's literal thresholds.
QLORA_HOST_DEVICE inline uint8_t quantize_fp4(float x) {
  const uint8_t sign = x < 0 ? 0b1000 : 0b0000;
  x = x < 0 ? -x : x;  // fabsf, keeping NaN a NaN
  if (x > 0.29166667f) {
    if (x > 0.583333f) return static_cast<uint8_t>((x > 0.8333333f ? 0b0011 : 0b0010) + sign);
    return static_cast<uint8_t>((x > 0.4166667f ? 0b0101 : 0b0100) + sign);
  }
  if (x > 0.0859375f) return static_cast<uint8_t>((x > 0.20833333f ? 0b0111 : 0b0110) + sign);
  return static_cast<uint8_t>((x > 0.00260417f ? 0b0001 : 0b0000) + sign);
}

QLORA_HOST_DEVICE inline uint8_t quantize_4bit_value(QuantType type, float x) {
  return type == QuantType::kNf4 ? quantize_nf4(x) : quantize_fp4(x);
}

// dQuantize<0>: binary search over the 256 sorted entries of `code`, then the nearer of the bracketing
// pair by comparing with their fp32 midpoint.
QLORA_HOST_DEVICE inline uint8_t quantize_dynamic(const float* code, float x) {
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f;
  float val = code[pivot];
  for (int i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot];
  }
  if (upper_pivot == 255) upper = code[upper_pivot];
  if (lower_pivot == 0) lower = code[lower_pivot];
  if (x > val) {
    const float midpoint = (upper + val) * 0.5f;
    return static_cast<uint8_t>(x > midpoint ? upper_pivot : pivot);
  }
  const float midpoint = (lower + val) * 0.5f;
  return static_cast<uint8_t>(x < midpoint ? lower_pivot : pivot);
}

}  // namespace qlora::nf4
