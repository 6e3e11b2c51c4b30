// CPU reference for bitsandbytes' LLM.int8() row-wise quantization (int8_vectorwise_quant), the layout
// of Int8Params / Linear8bitLt: CB int8 [rows, cols] and SCB float32 [rows] (the row absmax).
#pragma once

#include <cstdint>

#include "qlora/quant/half.h"

namespace qlora::quant {

// bnb int8_vectorwise_quant on float16 input (Int8Params quantizes weight.half()):
//   row_stats[r] = max |A[r, :]| over the values with |x| < threshold (all values when threshold <= 0),
//   out[r, c] = round_half_even(float(A[r, c]) * float32(127 / row_stats[r])).
// With threshold > 0, every column holding a value |x| >= threshold is zeroed in `out` (when rows > 1,
// as bnb does) and flagged in outlier_cols (cols bytes, may be null). An all-zero row quantizes to 0.
// Note: CUDA bnb computes 127/absmax with __fdividef (approximate), so on CUDA a value that lands
// within an ulp of a .5 rounding boundary can differ by one; this follows bnb's CPU/default path.
void int8_vectorwise_quant_reference(const uint16_t* a_f16, int64_t rows, int64_t cols, float threshold,
                                     int8_t* out, float* row_stats, uint8_t* outlier_cols);

// out[r, c] = float(cb[r, c]) * (scb[r] * (1/127)) in float32, rounded to out_type: the weight that
// bnb's MatMul8bitFp (the CPU path of Linear8bitLt) multiplies by.
void int8_dequantize_reference(const int8_t* cb, const float* scb, int64_t rows, int64_t cols, void* out,
                               FloatType out_type);

}  // namespace qlora::quant
