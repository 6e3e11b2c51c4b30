// LoRA fusion kernels: the low-rank product P[i, r] * Q[r, j] summed over the rank and folded straight
// into an output in one pass, without a full-size temporary. Raw pointers and a stream, no torch; every
// function returns a cudaError_t as int (0 = success). Element types are ints as in nf4_dequantize.h:
// 0 float32, 1 float16, 2 bfloat16. All pointers are device pointers.
//
// Numerics, shared by every kernel here and pinned bit for bit by the CPU loops in src/ops/lora_fusion.cpp:
// acc = 0.0f; for r = 0 .. R-1 in order: acc = fmaf(P[i, r], Q[r, j], acc) (inputs widened to float32).
#pragma once

#include <cstdint>

#include "kernels/nf4_dequantize.h"

namespace qlora::kernels {

// A strided 2-D view: element (i, j) is data[i * stride0 + j * stride1] (strides in elements).
struct MatrixRef {
  void* data = nullptr;
  int type = 0;  // 0 float32, 1 float16, 2 bfloat16
  int64_t rows = 0, cols = 0;
  int64_t stride0 = 0, stride1 = 0;
};

struct ConstMatrixRef {
  const void* data = nullptr;
  int type = 0;
  int64_t rows = 0, cols = 0;
  int64_t stride0 = 0, stride1 = 0;
};

// y[m, n] = round_y(fmaf(scale, acc[m, n], float(y[m, n]))) with acc over t[m, r] * b[n, r]:
// y [M, N], t [M, R], b [N, R]; t and b share one type. One rounding into y's type.
int lora_add(MatrixRef y, ConstMatrixRef t, ConstMatrixRef b, float scale, void* stream);

// PEFT's merge / unmerge on a dense weight w [N, K] with a [R, K], b [N, R] (a and b share one type):
// d = round_w(acc[n, k] * scale), then w = round_w(float(w) + float(d)) (or - when subtract): the delta is
// rounded to the weight's type first, exactly as `w.add_((b.float() @ a.float() * scale).to(w.dtype))`.
int lora_merge(MatrixRef w, ConstMatrixRef a, ConstMatrixRef b, float scale, bool subtract, void* stream);

// The same merge with a 4-bit base read directly: out [N, K] (contiguous, out_type) =
// round(float(round(dequant(n * K + k))) + float(round(acc * scale))), i.e. dequantize_4bit to out_type
// followed by lora_merge, in one pass.
int lora_merge_4bit(const uint8_t* packed, AbsmaxSource absmax, int64_t blocksize, int quant_type,
                    MatrixRef out, ConstMatrixRef a, ConstMatrixRef b, float scale, void* stream);

}  // namespace qlora::kernels
