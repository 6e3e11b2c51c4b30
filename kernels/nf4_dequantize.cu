#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/device_common.cuh"
#include "kernels/nf4_dequantize.h"
#include "kernels/nf4_layout.h"

namespace qlora::kernels {

namespace {

constexpr int kThreads = 256;

int grid_for(int64_t items) {
  return static_cast<int>(std::min<int64_t>((items + kThreads - 1) / kThreads, 65535));
}

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

// One thread per packed byte: two outputs each; both share a block since blocksizes are even.
template <typename T>
__global__ void dequantize_4bit_kernel(const uint8_t* __restrict__ packed, AbsmaxSource src,
                                       T* __restrict__ out, int64_t n, int64_t blocksize, int quant_type) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t byte = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       byte < nf4::packed_bytes(n); byte += stride) {
    const uint8_t b = packed[byte];
    const int64_t i = 2 * byte;
    const float scale = block_absmax(src, i / blocksize);
    out[i] = from_float<T>(__fmul_rn(code_value(quant_type, b >> 4), scale));
    if (i + 1 < n) out[i + 1] = from_float<T>(__fmul_rn(code_value(quant_type, b & 0x0F), scale));
  }
}

// Thread p of row r writes window columns 2p and 2p+1; blockIdx.y strides over the rows. The two
// elements may lie in different bytes and different blocks (odd cols or col_begin), so each is looked
// up by its own flat index.
template <typename T>
__global__ void dequantize_4bit_window_kernel(const uint8_t* __restrict__ packed, AbsmaxSource src,
                                              T* __restrict__ out, Window4bit w, int64_t blocksize,
                                              int quant_type) {
  const int64_t width = w.col_end - w.col_begin;
  const int64_t c = 2 * (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x);
  if (c >= width) return;
  for (int64_t r = w.row_begin + blockIdx.y; r < w.row_end; r += gridDim.y) {
    const int64_t i = r * w.cols + w.col_begin + c;
    T* o = out + (r - w.row_begin) * width + c;
    o[0] = from_float<T>(
        __fmul_rn(code_value(quant_type, nf4::code_at(packed, i)), block_absmax(src, i / blocksize)));
    if (c + 1 < width) {
      o[1] = from_float<T>(__fmul_rn(code_value(quant_type, nf4::code_at(packed, i + 1)),
                                     block_absmax(src, (i + 1) / blocksize)));
    }
  }
}

__global__ void dequantize_nested_absmax_kernel(const uint8_t* __restrict__ qabsmax,
                                                const float* __restrict__ nested_absmax,
                                                const float* __restrict__ nested_code, float offset,
                                                float* __restrict__ absmax, int64_t n_blocks) {
  AbsmaxSource src;
  src.qabsmax = qabsmax;
  src.nested_absmax = nested_absmax;
  src.nested_code = nested_code;
  src.offset = offset;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n_blocks; i += stride) {
    absmax[i] = block_absmax(src, i);
  }
}

// One warp per output row; lanes stride over K and keep one float32 partial sum per batch row, then a
// shuffle reduction. Straightforward on purpose: tuning (vector loads, several rows per warp, shared x)
// is for a GPU host.
template <typename T>
__global__ void gemv_4bit_kernel(const T* __restrict__ x, const uint8_t* __restrict__ packed,
                                 const float* __restrict__ absmax, T* __restrict__ y, int batch,
                                 int64_t out_features, int64_t in_features, int64_t blocksize,
                                 int quant_type) {
  const int64_t warps_per_block = blockDim.x / 32;
  const int64_t row = blockIdx.x * warps_per_block + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= out_features) return;
  float acc[kGemvMaxBatch];
#pragma unroll
  for (int b = 0; b < kGemvMaxBatch; ++b) acc[b] = 0.0f;
  const int64_t base = row * in_features;
  for (int64_t k = lane; k < in_features; k += 32) {
    const int64_t idx = base + k;
    const float w = code_value(quant_type, nf4::code_at(packed, idx)) * absmax[idx / blocksize];
#pragma unroll
    for (int b = 0; b < kGemvMaxBatch; ++b) {
      if (b < batch) acc[b] += to_float(x[b * in_features + k]) * w;
    }
  }
#pragma unroll
  for (int b = 0; b < kGemvMaxBatch; ++b) {
    float v = acc[b];
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0 && b < batch) y[b * out_features + row] = from_float<T>(v);
  }
}

}  // namespace

int nf4_dequantize_f32(const uint8_t* packed, const float* absmax, float* out, int64_t n, int64_t blocksize,
                       void* stream) {
  if (n <= 0) return cudaSuccess;
  if (!nf4::valid_blocksize(blocksize)) return cudaErrorInvalidValue;
  nf4_dequantize_f32_kernel<<<grid_for(nf4::packed_bytes(n)), kThreads, 0,
                              static_cast<cudaStream_t>(stream)>>>(packed, absmax, out, n, blocksize);
  return cudaGetLastError();
}

int dequantize_4bit(const uint8_t* packed, AbsmaxSource absmax, void* out, int out_type, int64_t n,
                    int64_t blocksize, int quant_type, void* stream) {
  if (n <= 0) return cudaSuccess;
  if (!nf4::valid_blocksize(blocksize) || (quant_type != 0 && quant_type != 1)) return cudaErrorInvalidValue;
  if (absmax.absmax == nullptr &&
      (absmax.qabsmax == nullptr || absmax.nested_absmax == nullptr || absmax.nested_code == nullptr)) {
    return cudaErrorInvalidValue;
  }
  const auto s = static_cast<cudaStream_t>(stream);
  const int grid = grid_for(nf4::packed_bytes(n));
  switch (out_type) {
    case 0:
      dequantize_4bit_kernel<float>
          <<<grid, kThreads, 0, s>>>(packed, absmax, static_cast<float*>(out), n, blocksize, quant_type);
      break;
    case 1:
      dequantize_4bit_kernel<__half>
          <<<grid, kThreads, 0, s>>>(packed, absmax, static_cast<__half*>(out), n, blocksize, quant_type);
      break;
    case 2:
      dequantize_4bit_kernel<__nv_bfloat16><<<grid, kThreads, 0, s>>>(
          packed, absmax, static_cast<__nv_bfloat16*>(out), n, blocksize, quant_type);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

int dequantize_4bit_window(const uint8_t* packed, AbsmaxSource absmax, void* out, int out_type,
                           Window4bit window, int64_t blocksize, int quant_type, void* stream) {
  if (!nf4::valid_blocksize(blocksize) || (quant_type != 0 && quant_type != 1)) return cudaErrorInvalidValue;
  if (absmax.absmax == nullptr &&
      (absmax.qabsmax == nullptr || absmax.nested_absmax == nullptr || absmax.nested_code == nullptr)) {
    return cudaErrorInvalidValue;
  }
  if (window.row_begin < 0 || window.col_begin < 0 || window.col_end > window.cols)
    return cudaErrorInvalidValue;
  const int64_t rows = window.row_end - window.row_begin, width = window.col_end - window.col_begin;
  if (rows <= 0 || width <= 0) return cudaSuccess;
  const int64_t pairs = (width + 1) / 2;
  const dim3 grid(static_cast<unsigned>((pairs + kThreads - 1) / kThreads),
                  static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
  const auto s = static_cast<cudaStream_t>(stream);
  switch (out_type) {
    case 0:
      dequantize_4bit_window_kernel<float>
          <<<grid, kThreads, 0, s>>>(packed, absmax, static_cast<float*>(out), window, blocksize, quant_type);
      break;
    case 1:
      dequantize_4bit_window_kernel<__half><<<grid, kThreads, 0, s>>>(
          packed, absmax, static_cast<__half*>(out), window, blocksize, quant_type);
      break;
    case 2:
      dequantize_4bit_window_kernel<__nv_bfloat16><<<grid, kThreads, 0, s>>>(
          packed, absmax, static_cast<__nv_bfloat16*>(out), window, blocksize, quant_type);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

int dequantize_nested_absmax(const uint8_t* qabsmax, const float* nested_absmax, const float* nested_code,
                             float offset, float* absmax, int64_t n_blocks, void* stream) {
  if (n_blocks <= 0) return cudaSuccess;
  dequantize_nested_absmax_kernel<<<grid_for(n_blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      qabsmax, nested_absmax, nested_code, offset, absmax, n_blocks);
  return cudaGetLastError();
}

int gemv_4bit(const void* x, int x_type, const uint8_t* packed, const float* absmax, void* y, int64_t batch,
              int64_t out_features, int64_t in_features, int64_t blocksize, int quant_type, void* stream) {
  if (batch < 1 || batch > kGemvMaxBatch || !nf4::valid_blocksize(blocksize)) return cudaErrorInvalidValue;
  if (quant_type != 0 && quant_type != 1) return cudaErrorInvalidValue;
  if (out_features <= 0 || in_features <= 0) return cudaSuccess;
  constexpr int kWarps = 8;
  const int grid = static_cast<int>((out_features + kWarps - 1) / kWarps);
  const auto s = static_cast<cudaStream_t>(stream);
  const int b = static_cast<int>(batch);
  if (x_type == 1) {
    gemv_4bit_kernel<__half><<<grid, kWarps * 32, 0, s>>>(static_cast<const __half*>(x), packed, absmax,
                                                          static_cast<__half*>(y), b, out_features,
                                                          in_features, blocksize, quant_type);
  } else if (x_type == 2) {
    gemv_4bit_kernel<__nv_bfloat16><<<grid, kWarps * 32, 0, s>>>(
        static_cast<const __nv_bfloat16*>(x), packed, absmax, static_cast<__nv_bfloat16*>(y), b, out_features,
        in_features, blocksize, quant_type);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace qlora::kernels
