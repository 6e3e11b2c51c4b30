#include <cuda_runtime.h>

#include "kernels/nf4_dequantize.h"
#include "kernels/nf4_layout.h"

namespace qlora::kernels {

namespace {

__constant__ float kDeviceCodebook[nf4::kCodes] = QLORA_NF4_CODEBOOK;

// One thread per packed byte: two outputs each, so reads are one byte per two values.
__global__ void nf4_dequantize_f32_kernel(const uint8_t* __restrict__ packed,
                                          const float* __restrict__ absmax, float* __restrict__ out,
                                          int64_t n, int64_t blocksize) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t byte = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       byte < nf4::packed_bytes(n); byte += stride) {
    const uint8_t b = packed[byte];
    const int64_t i = 2 * byte;
    out[i] = kDeviceCodebook[b >> 4] * absmax[i / blocksize];
    if (i + 1 < n) out[i + 1] = kDeviceCodebook[b & 0x0F] * absmax[(i + 1) / blocksize];
  }
}

}  // namespace

int nf4_dequantize_f32(const uint8_t* packed, const float* absmax, float* out, int64_t n, int64_t blocksize,
                       void* stream) {
  if (n <= 0) return cudaSuccess;
  if (!nf4::valid_blocksize(blocksize)) return cudaErrorInvalidValue;
  constexpr int kThreads = 256;
  const int64_t bytes = nf4::packed_bytes(n);
  const int blocks = static_cast<int>(std::min<int64_t>((bytes + kThreads - 1) / kThreads, 65535));
  nf4_dequantize_f32_kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(packed, absmax, out,
                                                                                        n, blocksize);
  return cudaGetLastError();
}

}  // namespace qlora::kernels
