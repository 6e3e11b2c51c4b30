#include "qlora/ops/dequantize.h"

#include <ATen/ATen.h>

#include "kernels/nf4_layout.h"
#include "qlora/core/error.h"
#include "qlora/quant/nf4.h"

#ifdef QLORA_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>

#include "kernels/nf4_dequantize.h"
#endif

namespace qlora::ops {

bool cuda_kernels_built() {
#ifdef QLORA_WITH_CUDA
  return true;
#else
  return false;
#endif
}

at::Tensor nf4_dequantize(const at::Tensor& packed, const at::Tensor& absmax, int64_t numel,
                          int64_t blocksize) {
  if (packed.scalar_type() != at::kByte) fail("nf4_dequantize: packed weights must be uint8");
  if (absmax.scalar_type() != at::kFloat) fail("nf4_dequantize: absmax must be float32");
  if (!nf4::valid_blocksize(blocksize)) {
    fail("nf4_dequantize: blocksize " + std::to_string(blocksize) + " is not one of 32, 64, ..., 4096");
  }
  if (packed.numel() != nf4::packed_bytes(numel)) {
    fail("nf4_dequantize: " + std::to_string(numel) + " values need " +
         std::to_string(nf4::packed_bytes(numel)) + " packed bytes, got " + std::to_string(packed.numel()));
  }
  if (absmax.numel() != nf4::num_blocks(numel, blocksize)) {
    fail("nf4_dequantize: expected " + std::to_string(nf4::num_blocks(numel, blocksize)) +
         " absmax values, got " + std::to_string(absmax.numel()));
  }
  if (packed.device() != absmax.device()) fail("nf4_dequantize: packed and absmax on different devices");
  const at::Tensor p = packed.contiguous();
  const at::Tensor a = absmax.contiguous();
  at::Tensor out = at::empty({numel}, p.options().dtype(at::kFloat));
  if (p.is_cuda()) {
#ifdef QLORA_WITH_CUDA
    const int err =
        kernels::nf4_dequantize_f32(p.data_ptr<uint8_t>(), a.data_ptr<float>(), out.data_ptr<float>(), numel,
                                    blocksize, at::cuda::getCurrentCUDAStream().stream());
    if (err != 0) fail("nf4_dequantize: CUDA kernel failed with error " + std::to_string(err));
#else
    fail("nf4_dequantize: this build has no CUDA kernels (configure with QLORA_CUDA=ON)");
#endif
  } else {
    quant::nf4_dequantize_f32_reference(p.data_ptr<uint8_t>(), a.data_ptr<float>(), out.data_ptr<float>(),
                                        numel, blocksize);
  }
  return out;
}

}  // namespace qlora::ops
