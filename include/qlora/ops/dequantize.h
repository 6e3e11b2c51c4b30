// Thin ATen layer over NF4 dequantization: checks dtype/device/shape, then runs the CUDA kernel
// for CUDA tensors or the CPU reference otherwise.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace qlora::ops {

// packed: uint8 [(numel+1)/2] (any shape, contiguous); absmax: float32 [ceil(numel/blocksize)].
// Returns float32 of numel elements, on the device of `packed`.
at::Tensor nf4_dequantize(const at::Tensor& packed, const at::Tensor& absmax, int64_t numel,
                          int64_t blocksize);

// Whether kernels/ was compiled into this build.
bool cuda_kernels_built();

}  // namespace qlora::ops
