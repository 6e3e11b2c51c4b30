// bitsandbytes-compatible 4-bit quantization on at::Tensor: checks dtype/device/shape, then runs the CPU
// reference (src/quant) or the CUDA kernel (kernels/). The state mirrors bnb's QuantState.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernels/nf4_layout.h"

namespace qlora::ops {

using nf4::QuantType;

// "nf4" / "fp4" <-> QuantType; parse throws Error naming `where`.
QuantType parse_quant_type(const std::string& name, const std::string& where);
std::string quant_type_name(QuantType type);

// bitsandbytes QuantState of one 4-bit weight.
struct QuantState4bit {
  at::Tensor packed;                           // uint8 [(numel+1)/2, 1], high nibble first
  at::Tensor absmax;                           // float32 [n_blocks], or uint8 [n_blocks] when nested
  at::Tensor nested_absmax;                    // float32 [ceil(n_blocks/256)] (nested only)
  at::Tensor nested_code;                      // float32 [256], the dynamic map (nested only)
  at::Tensor offset;                           // float32 scalar, mean of the fp32 absmax (nested only)
  at::Tensor code;                             // float32 [16], the 4-bit codebook (bnb's quant_map)
  std::vector<int64_t> shape;                  // original weight shape, e.g. [out, in]
  at::ScalarType dtype = at::kFloat;           // original / compute dtype
  int64_t blocksize = nf4::kDefaultBlocksize;  // one of 32..4096
  int64_t nested_blocksize = nf4::kNestedBlocksize;
  QuantType quant_type = QuantType::kNf4;

  bool nested() const { return nested_absmax.defined(); }
  int64_t numel() const;
};

// bnb functional.quantize_4bit(w, blocksize, compress_statistics=double_quant, quant_type): w is float32,
// float16 or bfloat16 of any shape; absmax is computed in float32 after upcasting. CUDA inputs are
// quantized by the CPU reference and moved back (weights are quantized once, at load).
QuantState4bit quantize_4bit(const at::Tensor& w, QuantType quant_type,
                             int64_t blocksize = nf4::kDefaultBlocksize, bool double_quant = false);

// The float32 absmax of a state (dequantizing the nested one when double-quantized).
at::Tensor state_absmax_f32(const QuantState4bit& state);

// bnb dequantize_4bit: tensor of state.shape in out_dtype (default state.dtype), on the state's device.
at::Tensor dequantize_4bit(const QuantState4bit& state,
                           std::optional<at::ScalarType> out_dtype = std::nullopt);

// y = x @ dequant(W)^T + bias in x's dtype (bnb matmul_4bit). Autograd reaches x (and bias) only:
// W is dequantized detached, as MatMul4Bit gives no gradient to the 4-bit weight. On CUDA with a 2-D x
// of 1..8 rows, no grad needed and fp16/bf16, the GEMV kernel reads the packed weight directly; every
// other CUDA call takes matmul_4bit_tiled (W never exists densely). On CPU: dequantize, then at::linear.
at::Tensor matmul_4bit(const at::Tensor& x, const QuantState4bit& state, const at::Tensor& bias = {});

// The training matmul: y = x @ dequant(W)^T + bias in x's dtype, computed over tiles of W's output rows.
// Each tile W[n0:n1, :] is dequantized into ONE reused workspace [tile_rows, K] in x's dtype, then
// multiplied into y[:, n0:n1] by torch's matmul (cuBLAS on CUDA). A tile starts on a quantization block
// boundary: tile_rows must be a multiple of blocksize / gcd(K, blocksize) (an Error otherwise); 0 picks the
// largest multiple of that and of 64 (aligned output slices for cuBLAS) whose workspace fits in 32 MiB
// (at least one such step); >= N means one tile.
// Autograd (bnb MatMul4Bit): dx = dy @ dequant(W) and dbias = dy summed over rows; W gets no gradient and
// only the state is saved (no dense W, nothing of x). dx is computed over column windows W[:, k0:k1]
// (same workspace size, width tile_rows * K / N rounded down to a multiple of 64, or of 8 below 128) so that
// each dx element is ONE matmul reduction over all N, rounded once, as in bnb, rather than a sum of
// per-tile partial products rounded to x's dtype after each tile.
at::Tensor matmul_4bit_tiled(const at::Tensor& x, const QuantState4bit& state, const at::Tensor& bias = {},
                             int64_t tile_rows = 0);

// The tile_rows matmul_4bit_tiled uses for this x and state (after resolving 0 / clamping to N).
int64_t matmul_4bit_tile_rows(const at::Tensor& x, const QuantState4bit& state, int64_t tile_rows = 0);

// Whether the GEMV path would be taken for this x (for tests and benchmarks).
bool matmul_4bit_uses_gemv(const at::Tensor& x, const QuantState4bit& state);

}  // namespace qlora::ops
