#include "kernels/nf4_layout.h"
#include "qlora/core/error.h"
#include "qlora/quant/nf4.h"

namespace qlora::quant {

void nf4_dequantize_f32_reference(const uint8_t* packed, const float* absmax, float* out, int64_t n,
                                  int64_t blocksize) {
  if (!nf4::valid_blocksize(blocksize)) {
    fail("NF4 blocksize " + std::to_string(blocksize) + " is not one of 32, 64, ..., 4096");
  }
  for (int64_t i = 0; i < n; ++i) {
    out[i] = nf4::kCodebook[nf4::code_at(packed, i)] * absmax[i / blocksize];
  }
}

}  // namespace qlora::quant
