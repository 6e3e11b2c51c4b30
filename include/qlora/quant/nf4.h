// CPU references for bitsandbytes' 4-bit (NF4/FP4) blockwise quantization and its double quantization
// (layout: kernels/nf4_layout.h). Plain loops over raw pointers with the same shape of signature as the
// CUDA kernels, so tests compare the two directly. Semantics are CUDA bitsandbytes' (see
// tools/gen_bnb_fixtures.py for where its CPU backend differs); every function throws Error on a bad
// blocksize.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/nf4_layout.h"
#include "qlora/quant/half.h"

namespace qlora::quant {

using nf4::QuantType;

// out[i] = codebook[code(packed, i)] * absmax[i / blocksize] (NF4), float32.
void nf4_dequantize_f32_reference(const uint8_t* packed, const float* absmax, float* out, int64_t n,
                                  int64_t blocksize);

// kQuantizeBlockwise for 4 bits: absmax[b] = max |x| over block b (in float32 after upcasting the input),
// code = quantize(x * (1/absmax[b])). input: n values of `in_type`; packed: (n+1)/2 bytes, high nibble
// first, the pad nibble of an odd n quantizes 0.0 like CUDA; absmax: ceil(n/blocksize) floats.
void quantize_4bit_reference(const void* input, FloatType in_type, int64_t n, int64_t blocksize,
                             QuantType quant_type, uint8_t* packed, float* absmax);

// out[i] = value(code(packed, i)) * absmax[i / blocksize] in float32, then rounded to `out_type`.
void dequantize_4bit_reference(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize,
                               QuantType quant_type, void* out, FloatType out_type);

// functional.create_dynamic_map(signed, max_exponent_bits, total_bits), bit-exact: 2^total_bits sorted
// float32 values (the default is the 8-bit signed map that double quantization uses).
std::vector<float> create_dynamic_map(bool is_signed = true, int max_exponent_bits = 7, int total_bits = 8);

// Double quantization of n_blocks absmax values with a given offset (bnb: absmax.mean(), which the ops
// layer computes with torch so the reduction order matches): centred = absmax - offset, quantized in
// blocks of 256 with the dynamic map `code` (256 floats). qabsmax: n_blocks codes; nested_absmax:
// ceil(n_blocks/256) floats.
void double_quant_reference(const float* absmax, int64_t n_blocks, float offset, const float* code,
                            uint8_t* qabsmax, float* nested_absmax);

// absmax[i] = code[qabsmax[i]] * nested_absmax[i / 256] + offset, as two float32 roundings (bnb
// dequantizes then adds; no fused multiply-add).
void dequantize_nested_absmax_reference(const uint8_t* qabsmax, const float* nested_absmax, float offset,
                                        const float* code, int64_t n_blocks, float* absmax);

// Storage bits per weight: 4 + 32/blocksize, or with double quantization 4 + 8/blocksize +
// 32/(blocksize*256) + the offset; counted exactly for `numel` (partial blocks, the pad nibble, the
// 4-byte offset). Not the code tables, which are shared per model in practice.
double bits_per_parameter(int64_t numel, int64_t blocksize, bool double_quant);

}  // namespace qlora::quant
