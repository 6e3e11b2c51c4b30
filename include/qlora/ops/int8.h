// bitsandbytes LLM.int8() weights on at::Tensor: Int8Params' layout (CB int8 [out, in], SCB float32 [out])
// and the two Linear8bitLt forward paths bnb runs on CPU.
#pragma once

#include <ATen/core/Tensor.h>

namespace qlora::ops {

struct Int8Weight {
  at::Tensor cb;   // int8 [out, in]
  at::Tensor scb;  // float32 [out], the row absmax of the float16 weight
};

// Int8Params._quantize: int8_vectorwise_quant(w.half()) with no outlier threshold. CPU tensors.
Int8Weight quantize_int8(const at::Tensor& w);

// CB * (SCB / 127) rounded to `dtype`, as MatMul8bitFp builds it.
at::Tensor dequantize_int8(const Int8Weight& w, at::ScalarType dtype);

// MatMul8bitFp (Linear8bitLt on CPU in training mode): linear(x, dequantize_int8(w, x.dtype), bias).
// Autograd reaches x and bias only.
at::Tensor matmul_int8(const at::Tensor& x, const Int8Weight& w, const at::Tensor& bias = {});

// MatMul8bitLt inference (Linear8bitLt.eval() on CPU): x is quantized row-wise to int8 (as float16);
// with threshold > 0 the columns of x holding |x| >= threshold are left out of the int8 product and
// added back as x[:, cols] @ dequant(CB[:, cols])^T in x's dtype (the LLM.int8() decomposition).
at::Tensor matmul_int8_lt(const at::Tensor& x, const Int8Weight& w, const at::Tensor& bias = {},
                          double threshold = 0.0);

}  // namespace qlora::ops
