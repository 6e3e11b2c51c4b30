// NF4 dequantize kernel: raw pointers and a stream, no torch. Returns a cudaError_t as int so
// callers need not include the CUDA runtime headers.
#pragma once

#include <cstdint>

namespace qlora::kernels {

// out[i] = codebook[code(packed, i)] * absmax[i / blocksize] for i in [0, n), out in float32.
// packed: (n+1)/2 bytes; absmax: ceil(n/blocksize) floats; all device pointers.
int nf4_dequantize_f32(const uint8_t* packed, const float* absmax, float* out, int64_t n, int64_t blocksize,
                       void* stream);

}  // namespace qlora::kernels
