// Device-side pieces shared by the .cu files of kernels/: conversions between float32 and the element
// types with explicit round-to-nearest (results match the CPU references bit for bit), the 4-bit codebook
// lookup and bnb's (double-quantized) absmax.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/nf4_dequantize.h"
#include "kernels/nf4_layout.h"

namespace qlora::kernels {

// One copy per translation unit (no separable compilation), in constant memory.
static __constant__ float kDeviceCodebook[nf4::kCodes] = QLORA_NF4_CODEBOOK;

__device__ __forceinline__ float code_value(int quant_type, uint8_t code) {
  return quant_type == 0 ? kDeviceCodebook[code] : nf4::fp4_value(code);
}

// bnb dequantizes the nested absmax in one kernel and adds the offset in another: two roundings, never
// an FMA, hence the explicit _rn intrinsics.
__device__ __forceinline__ float block_absmax(const AbsmaxSource& src, int64_t block) {
  if (src.absmax != nullptr) return src.absmax[block];
  const float scaled =
      __fmul_rn(src.nested_code[src.qabsmax[block]], src.nested_absmax[block / nf4::kNestedBlocksize]);
  return __fadd_rn(scaled, src.offset);
}

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

}  // namespace qlora::kernels
