// Fused LoRA ops on at::Tensor (kernels/lora_fusion.h): the low-rank term folded into the base output
// (inference) and merged into / out of a dense or 4-bit base weight, with no full-size temporary on CUDA.
// Each checks dtype/device/shape and runs the CUDA kernel for CUDA tensors, the CPU path otherwise. None
// of them records autograd: they refuse inputs that require grad while grad mode is on.
#pragma once

#include <ATen/core/Tensor.h>

#include "qlora/ops/quantize.h"

namespace qlora::ops {

// y[m, n] += scale * sum_r t[m, r] * B[n, r], in place. y: [M, N] float32/float16/bfloat16, any strides
// (row views of a larger output work); t: [M, R], B: [N, R], one float dtype between them (the adapter's),
// any strides, any R >= 1 (the kernel walks the rank in chunks; LoRA uses <= 128). float32 accumulation
// in rank order, then y = round(fmaf(scale, acc, y)): one rounding into y's dtype. The CPU path is the
// same formula as plain loops (bit-identical to the kernel).
void lora_add_(at::Tensor& y, const at::Tensor& t, const at::Tensor& B, double scale);

// PEFT merge (subtract = false) / unmerge (true) on a dense W [N, K] with A [R, K], B [N, R]:
// W = round(W +/- round((B.float() @ A.float()) * scale)), the delta rounded to W's dtype first, as
// nn::merge_adapter has always done. CPU: exactly that ATen composite (bits unchanged). CUDA: one fused
// kernel whose delta sums r = 0..R-1 in order with fmaf (cuBLAS's order is unspecified, so CUDA results
// may differ from the composite's in the last bit of the fp32 delta).
void lora_merge_(at::Tensor& W, const at::Tensor& A, const at::Tensor& B, double scale, bool subtract);

// A dense [N, K] weight in out_dtype = round(dequantize_4bit(state, out_dtype) + round(delta)), i.e. PEFT's
// merge of a Linear4bit base (densify, then add_) in one pass on CUDA; the composite on CPU.
at::Tensor lora_merge_4bit(const QuantState4bit& state, const at::Tensor& A, const at::Tensor& B,
                           double scale, at::ScalarType out_dtype);

// The CUDA merge kernel's exact formula as CPU loops (std::fma in rank order, the same roundings), for
// tests: the kernel must match it bit for bit, and it must match the composite within fp32 summation
// error. W must be on the CPU.
void lora_merge_kernel_formula_(at::Tensor& W, const at::Tensor& A, const at::Tensor& B, double scale,
                                bool subtract);

}  // namespace qlora::ops
