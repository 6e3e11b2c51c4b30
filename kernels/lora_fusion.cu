#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels/device_common.cuh"
#include "kernels/lora_fusion.h"
#include "kernels/nf4_layout.h"

namespace qlora::kernels {

namespace {

// One block computes a kTileI x kTileJ tile of acc[i, j] = sum_r P[i, r] * Q[r, j]; its 128 threads form
// a 16 (j) x 8 (i) grid and each keeps a 4 x 4 micro-tile (rows ty + 8a, columns tx + 16b) in
// registers. The rank is walked in chunks of kChunkR through shared memory (any rank works; LoRA's
// is <= 128 in practice), each chunk in order, so every acc is one in-order chain of fmaf.
constexpr int kTileI = 32;
constexpr int kTileJ = 64;
constexpr int kChunkR = 32;
constexpr int kThreadsJ = 16;
constexpr int kThreadsI = 8;
constexpr int kThreads = kThreadsJ * kThreadsI;
constexpr int kMicroI = kTileI / kThreadsI;
constexpr int kMicroJ = kTileJ / kThreadsJ;
static_assert(kMicroI * kThreadsI == kTileI && kMicroJ * kThreadsJ == kTileJ, "tile must split evenly");

// Rounds through T and back: the value a T store would hold.
template <typename T>
__device__ __forceinline__ float round_to(float v) {
  return to_float(from_float<T>(v));
}

// y = round_y(fmaf(scale, acc, y)).
template <typename Y>
struct AddEpilogue {
  Y* y;
  int64_t stride0, stride1;
  float scale;
  __device__ void operator()(int64_t i, int64_t j, float acc) const {
    Y* p = y + i * stride0 + j * stride1;
    *p = from_float<Y>(__fmaf_rn(scale, acc, to_float(*p)));
  }
};

// w = round_w(w +/- round_w(acc * scale)); explicit _rn intrinsics so nvcc never fuses the steps.
template <typename W>
struct MergeEpilogue {
  W* w;
  int64_t stride0, stride1;
  float scale;
  bool subtract;
  __device__ void operator()(int64_t i, int64_t j, float acc) const {
    W* p = w + i * stride0 + j * stride1;
    const float d = round_to<W>(__fmul_rn(acc, scale));
    const float v = to_float(*p);
    *p = from_float<W>(subtract ? __fsub_rn(v, d) : __fadd_rn(v, d));
  }
};

// out = round(round(dequant) + round(acc * scale)) for flat element i * cols + j of the 4-bit weight.
template <typename W>
struct Merge4bitEpilogue {
  W* out;
  int64_t cols;
  const uint8_t* packed;
  AbsmaxSource absmax;
  int64_t blocksize;
  int quant_type;
  float scale;
  __device__ void operator()(int64_t i, int64_t j, float acc) const {
    const int64_t idx = i * cols + j;
    const float base = round_to<W>(
        __fmul_rn(code_value(quant_type, nf4::code_at(packed, idx)), block_absmax(absmax, idx / blocksize)));
    const float d = round_to<W>(__fmul_rn(acc, scale));
    out[idx] = from_float<W>(__fadd_rn(base, d));
  }
};

// P [rows, rank] with strides (p_s0, p_s1); Q [rank, cols] with strides (q_s0, q_s1).
template <typename AB, typename Epilogue>
__global__ void __launch_bounds__(kThreads)
    lowrank_kernel(const AB* __restrict__ p, int64_t p_s0, int64_t p_s1, const AB* __restrict__ q,
                   int64_t q_s0, int64_t q_s1, int64_t rows, int64_t cols, int64_t rank, Epilogue epi) {
  // +1 columns: the rank-fastest loads below then hit 32 different banks.
  __shared__ float ps[kChunkR][kTileI + 1];
  __shared__ float qs[kChunkR][kTileJ + 1];
  const int tx = threadIdx.x % kThreadsJ;
  const int ty = threadIdx.x / kThreadsJ;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * kTileI;
  const int64_t j0 = static_cast<int64_t>(blockIdx.y) * kTileJ;
  float acc[kMicroI][kMicroJ];
#pragma unroll
  for (int a = 0; a < kMicroI; ++a) {
#pragma unroll
    for (int b = 0; b < kMicroJ; ++b) acc[a][b] = 0.0f;
  }
  // Coalesce the global loads along whichever index is unit-stride.
  const bool p_rank_fast = p_s1 == 1;
  const bool q_col_fast = q_s1 == 1;
  for (int64_t r0 = 0; r0 < rank; r0 += kChunkR) {
    const int rc = static_cast<int>(rank - r0 < kChunkR ? rank - r0 : kChunkR);
    for (int e = threadIdx.x; e < kTileI * kChunkR; e += kThreads) {
      const int r = p_rank_fast ? e % kChunkR : e / kTileI;
      const int i = p_rank_fast ? e / kChunkR : e % kTileI;
      float v = 0.0f;
      if (r < rc && i0 + i < rows) v = to_float(p[(i0 + i) * p_s0 + (r0 + r) * p_s1]);
      ps[r][i] = v;
    }
    for (int e = threadIdx.x; e < kTileJ * kChunkR; e += kThreads) {
      const int r = q_col_fast ? e / kTileJ : e % kChunkR;
      const int j = q_col_fast ? e % kTileJ : e / kChunkR;
      float v = 0.0f;
      if (r < rc && j0 + j < cols) v = to_float(q[(r0 + r) * q_s0 + (j0 + j) * q_s1]);
      qs[r][j] = v;
    }
    __syncthreads();
    // Only the rc real ranks: no zero padding enters the chain (it could turn a -0 into +0).
    for (int r = 0; r < rc; ++r) {
      float pv[kMicroI], qv[kMicroJ];
#pragma unroll
      for (int a = 0; a < kMicroI; ++a) pv[a] = ps[r][ty + kThreadsI * a];
#pragma unroll
      for (int b = 0; b < kMicroJ; ++b) qv[b] = qs[r][tx + kThreadsJ * b];
#pragma unroll
      for (int a = 0; a < kMicroI; ++a) {
#pragma unroll
        for (int b = 0; b < kMicroJ; ++b) acc[a][b] = __fmaf_rn(pv[a], qv[b], acc[a][b]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int a = 0; a < kMicroI; ++a) {
#pragma unroll
    for (int b = 0; b < kMicroJ; ++b) {
      const int64_t i = i0 + ty + kThreadsI * a;
      const int64_t j = j0 + tx + kThreadsJ * b;
      if (i < rows && j < cols) epi(i, j, acc[a][b]);
    }
  }
}

template <typename AB, typename Epilogue>
int launch(ConstMatrixRef p, ConstMatrixRef q, int64_t rows, int64_t cols, int64_t rank, const Epilogue& epi,
           void* stream) {
  const int64_t tiles_i = (rows + kTileI - 1) / kTileI;
  const int64_t tiles_j = (cols + kTileJ - 1) / kTileJ;
  if (tiles_i > 0x7FFFFFFF || tiles_j > 65535) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(tiles_i), static_cast<unsigned>(tiles_j));
  lowrank_kernel<AB, Epilogue><<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const AB*>(p.data), p.stride0, p.stride1, static_cast<const AB*>(q.data), q.stride0,
      q.stride1, rows, cols, rank, epi);
  return cudaGetLastError();
}

template <typename Epilogue>
int launch_any_ab(int ab_type, ConstMatrixRef p, ConstMatrixRef q, int64_t rows, int64_t cols, int64_t rank,
                  const Epilogue& epi, void* stream) {
  switch (ab_type) {
    case 0:
      return launch<float>(p, q, rows, cols, rank, epi, stream);
    case 1:
      return launch<__half>(p, q, rows, cols, rank, epi, stream);
    case 2:
      return launch<__nv_bfloat16>(p, q, rows, cols, rank, epi, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

// The transpose as a view: Q[r, j] = b[j, r].
ConstMatrixRef transposed(ConstMatrixRef m) {
  ConstMatrixRef t = m;
  t.rows = m.cols;
  t.cols = m.rows;
  t.stride0 = m.stride1;
  t.stride1 = m.stride0;
  return t;
}

bool valid_type(int type) { return type == 0 || type == 1 || type == 2; }

}  // namespace

int lora_add(MatrixRef y, ConstMatrixRef t, ConstMatrixRef b, float scale, void* stream) {
  if (!valid_type(y.type) || !valid_type(t.type) || t.type != b.type) return cudaErrorInvalidValue;
  if (t.rows != y.rows || b.rows != y.cols || t.cols != b.cols || t.cols < 1) return cudaErrorInvalidValue;
  if (y.rows <= 0 || y.cols <= 0) return cudaSuccess;
  const ConstMatrixRef q = transposed(b);
  switch (y.type) {
    case 0:
      return launch_any_ab(t.type, t, q, y.rows, y.cols, t.cols,
                           AddEpilogue<float>{static_cast<float*>(y.data), y.stride0, y.stride1, scale},
                           stream);
    case 1:
      return launch_any_ab(t.type, t, q, y.rows, y.cols, t.cols,
                           AddEpilogue<__half>{static_cast<__half*>(y.data), y.stride0, y.stride1, scale},
                           stream);
    default:
      return launch_any_ab(
          t.type, t, q, y.rows, y.cols, t.cols,
          AddEpilogue<__nv_bfloat16>{static_cast<__nv_bfloat16*>(y.data), y.stride0, y.stride1, scale},
          stream);
  }
}

int lora_merge(MatrixRef w, ConstMatrixRef a, ConstMatrixRef b, float scale, bool subtract, void* stream) {
  if (!valid_type(w.type) || !valid_type(a.type) || a.type != b.type) return cudaErrorInvalidValue;
  if (b.rows != w.rows || a.cols != w.cols || a.rows != b.cols || a.rows < 1) return cudaErrorInvalidValue;
  if (w.rows <= 0 || w.cols <= 0) return cudaSuccess;
  switch (w.type) {
    case 0:
      return launch_any_ab(
          a.type, b, a, w.rows, w.cols, a.rows,
          MergeEpilogue<float>{static_cast<float*>(w.data), w.stride0, w.stride1, scale, subtract}, stream);
    case 1:
      return launch_any_ab(
          a.type, b, a, w.rows, w.cols, a.rows,
          MergeEpilogue<__half>{static_cast<__half*>(w.data), w.stride0, w.stride1, scale, subtract}, stream);
    default:
      return launch_any_ab(a.type, b, a, w.rows, w.cols, a.rows,
                           MergeEpilogue<__nv_bfloat16>{static_cast<__nv_bfloat16*>(w.data), w.stride0,
                                                        w.stride1, scale, subtract},
                           stream);
  }
}

int lora_merge_4bit(const uint8_t* packed, AbsmaxSource absmax, int64_t blocksize, int quant_type,
                    MatrixRef out, ConstMatrixRef a, ConstMatrixRef b, float scale, void* stream) {
  if (!nf4::valid_blocksize(blocksize) || (quant_type != 0 && quant_type != 1)) return cudaErrorInvalidValue;
  if (absmax.absmax == nullptr &&
      (absmax.qabsmax == nullptr || absmax.nested_absmax == nullptr || absmax.nested_code == nullptr)) {
    return cudaErrorInvalidValue;
  }
  if (!valid_type(out.type) || !valid_type(a.type) || a.type != b.type) return cudaErrorInvalidValue;
  if (b.rows != out.rows || a.cols != out.cols || a.rows != b.cols || a.rows < 1)
    return cudaErrorInvalidValue;
  if (out.stride1 != 1 || out.stride0 != out.cols) return cudaErrorInvalidValue;  // contiguous [N, K]
  if (out.rows <= 0 || out.cols <= 0) return cudaSuccess;
  switch (out.type) {
    case 0:
      return launch_any_ab(a.type, b, a, out.rows, out.cols, a.rows,
                           Merge4bitEpilogue<float>{static_cast<float*>(out.data), out.cols, packed, absmax,
                                                    blocksize, quant_type, scale},
                           stream);
    case 1:
      return launch_any_ab(a.type, b, a, out.rows, out.cols, a.rows,
                           Merge4bitEpilogue<__half>{static_cast<__half*>(out.data), out.cols, packed, absmax,
                                                     blocksize, quant_type, scale},
                           stream);
    default:
      return launch_any_ab(a.type, b, a, out.rows, out.cols, a.rows,
                           Merge4bitEpilogue<__nv_bfloat16>{static_cast<__nv_bfloat16*>(out.data), out.cols,
                                                            packed, absmax, blocksize, quant_type, scale},
                           stream);
  }
}

}  // namespace qlora::kernels
