#include <cmath>

#include "qlora/quant/int8.h"

namespace qlora::quant {

void int8_vectorwise_quant_reference(const uint16_t* a_f16, int64_t rows, int64_t cols, float threshold,
                                     int8_t* out, float* row_stats, uint8_t* outlier_cols) {
  const bool sparse = threshold > 0.0f;
  if (outlier_cols != nullptr) {
    for (int64_t c = 0; c < cols; ++c) outlier_cols[c] = 0;
  }
  if (sparse && outlier_cols != nullptr) {
    for (int64_t i = 0; i < rows * cols; ++i) {
      if (std::fabs(f16_to_float(a_f16[i])) >= threshold) outlier_cols[i % cols] = 1;
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* row = a_f16 + r * cols;
    float amax = 0.0f;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = std::fabs(f16_to_float(row[c]));
      if (!sparse || v < threshold) amax = std::fmax(amax, v);
    }
    row_stats[r] = amax;
    // bnb writes A * (127.0 / row_stats), and torch evaluates scalar / tensor as reciprocal(tensor) * scalar:
    // two float32 roundings, which decide ties such as 63.5 differently from one division.
    const float scale = (1.0f / amax) * 127.0f;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = f16_to_float(row[c]);
      const bool outlier = sparse && std::fabs(v) >= threshold;
      // bnb zeroes outliers before rounding; an all-zero row gives 0 * inf = NaN, which becomes 0.
      const float q = outlier ? 0.0f : v * scale;
      out[r * cols + c] = std::isnan(q) ? int8_t{0} : static_cast<int8_t>(std::nearbyint(q));
    }
  }
  if (sparse && rows > 1 && outlier_cols != nullptr) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        if (outlier_cols[c]) out[r * cols + c] = 0;
      }
    }
  }
}

void int8_dequantize_reference(const int8_t* cb, const float* scb, int64_t rows, int64_t cols, void* out,
                               FloatType out_type) {
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = scb[r] * (1.0f / 127.0f);
    for (int64_t c = 0; c < cols; ++c) {
      store_float(out, out_type, r * cols + c, static_cast<float>(cb[r * cols + c]) * scale);
    }
  }
}

}  // namespace qlora::quant
