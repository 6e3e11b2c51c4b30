// bitsandbytes' 8-bit blockwise optimizer states (bnb.optim.AdamW8bit, bitsandbytes 0.50.2): each
// moment is stored as uint8 codes into a 256-entry "dynamic" map (signed for exp_avg, unsigned for
// exp_avg_sq) with one float32 absmax per block of 256 elements. The update follows bnb's CPU kernel
// (backends/cpu/ops.py _optimizer_update_8bit_blockwise_cpu): dequantize, a float32 Adam step,
// requantize. The oracle is that kernel (tools/gen_train_memory_fixtures.py).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace qlora::train {

constexpr int64_t kBnbBlockSize = 256;

// functional.create_dynamic_map(signed): 256 sorted float32 values in [-1, 1] (signed) or [0, 1].
at::Tensor bnb_dynamic_map(bool is_signed);

// quantize_blockwise as bnb's CPU kernel: per block of 256 (the last may be partial) absmax = max |x|;
// x / absmax is mapped to (almost always) the nearest entry of `code` through bnb's 65536-bin lookup
// table. Runs on the host. codes: uint8, x's shape; absmax: [blocks] float32.
struct BlockwiseCodes {
  at::Tensor codes;
  at::Tensor absmax;
};
BlockwiseCodes quantize_blockwise(const at::Tensor& x, const at::Tensor& code);
// code[codes] * absmax[block], float32, codes' shape.
at::Tensor dequantize_blockwise(const at::Tensor& codes, const at::Tensor& absmax, const at::Tensor& code);

struct Adam8bitHyper {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  int64_t step = 1;  // 1-based, after the increment
};

// One AdamW update of `p` (in place) with 8-bit states (updated in place).
void adam_update_8bit_blockwise(at::Tensor& p, const at::Tensor& grad, BlockwiseCodes& exp_avg,
                                BlockwiseCodes& exp_avg_sq, const Adam8bitHyper& h);
// bnb's 32-bit kernel (_optimizer_update_32bit_cpu, "adam"), used for parameters below min_8bit_size:
// it folds eps and the bias corrections differently from torch.optim.AdamW.
void adam_update_32bit_bnb(at::Tensor& p, const at::Tensor& grad, at::Tensor& exp_avg, at::Tensor& exp_avg_sq,
                           const Adam8bitHyper& h);

}  // namespace qlora::train
