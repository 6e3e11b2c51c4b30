// CPU reference for NF4 (bitsandbytes layout, see kernels/nf4_layout.h). Plain loops over raw
// pointers with the same signature as the CUDA kernels, so tests compare the two directly.
#pragma once

#include <cstdint>

namespace qlora::quant {

// out[i] = codebook[code(packed, i)] * absmax[i / blocksize]; throws Error on a bad blocksize.
void nf4_dequantize_f32_reference(const uint8_t* packed, const float* absmax, float* out, int64_t n,
                                  int64_t blocksize);

}  // namespace qlora::quant
