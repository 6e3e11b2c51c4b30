// 4-bit (NF4/FP4) dequantize and GEMV kernels: raw pointers and a stream, no torch. Every function
// returns a cudaError_t as int (0 = success) so callers need not include the CUDA runtime headers.
// Float element types are passed as an int: 0 float32, 1 float16, 2 bfloat16 (= quant::FloatType).
// quant_type: 0 NF4, 1 FP4 (= nf4::QuantType). All pointers are device pointers.
#pragma once

#include <cstdint>

namespace qlora::kernels {

// out[i] = codebook[code(packed, i)] * absmax[i / blocksize] for i in [0, n), out in float32 (NF4).
// packed: (n+1)/2 bytes; absmax: ceil(n/blocksize) floats.
int nf4_dequantize_f32(const uint8_t* packed, const float* absmax, float* out, int64_t n, int64_t blocksize,
                       void* stream);

// Plain or double-quantized absmax for dequantize_4bit: exactly one of `absmax` (float32 per block) or
// the nested triple (qabsmax uint8 per block, nested_absmax float32 per 256 blocks, nested_code 256
// float32 + offset) is used; with `absmax == nullptr` the absmax is rebuilt on the fly as
// code[q] * nested_absmax[b / 256] + offset, with bnb's two separate float32 roundings.
struct AbsmaxSource {
  const float* absmax = nullptr;
  const uint8_t* qabsmax = nullptr;
  const float* nested_absmax = nullptr;
  const float* nested_code = nullptr;
  float offset = 0.0f;
};

// out[i] = value(code(packed, i)) * absmax(i / blocksize), computed in float32 and rounded to out_type.
int dequantize_4bit(const uint8_t* packed, AbsmaxSource absmax, void* out, int out_type, int64_t n,
                    int64_t blocksize, int quant_type, void* stream);

// A window of a row-major [rows, cols] 4-bit weight: rows [row_begin, row_end) x columns
// [col_begin, col_end). Element (r, c) is flat element r * cols + c of the packed weight.
struct Window4bit {
  int64_t cols = 0;
  int64_t row_begin = 0, row_end = 0;
  int64_t col_begin = 0, col_end = 0;
};

// Dequantizes a window into a contiguous out [row_end - row_begin, col_end - col_begin]: the same float32
// product and rounding per element as dequantize_4bit (identical bits). Block indices (and the nested
// block index, block / 256) are taken from the flat element index, so any window is valid without
// alignment: row tiles for matmul_4bit_tiled's forward, column windows for its input gradient.
int dequantize_4bit_window(const uint8_t* packed, AbsmaxSource absmax, void* out, int out_type,
                           Window4bit window, int64_t blocksize, int quant_type, void* stream);

// absmax[i] = nested_code[qabsmax[i]] * nested_absmax[i / 256] + offset for i in [0, n_blocks).
int dequantize_nested_absmax(const uint8_t* qabsmax, const float* nested_absmax, const float* nested_code,
                             float offset, float* absmax, int64_t n_blocks, void* stream);

// y[b, o] = sum_k x[b, k] * W[o, k] for b < batch (1..8), reading W [out_features, in_features] packed
// 4-bit directly (row-major flattened, bnb layout) with a float32 absmax per block. x, y: contiguous
// [batch, in_features] / [batch, out_features] of x_type (float16 or bfloat16); float32 accumulation.
int gemv_4bit(const void* x, int x_type, const uint8_t* packed, const float* absmax, void* y, int64_t batch,
              int64_t out_features, int64_t in_features, int64_t blocksize, int quant_type, void* stream);

inline constexpr int64_t kGemvMaxBatch = 8;

}  // namespace qlora::kernels
