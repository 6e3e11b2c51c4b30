// Private to src/ops: the kernels' element type (quant::FloatType) of an ATen floating dtype.
#pragma once

#include <c10/core/ScalarType.h>

#include <string>

#include "qlora/core/error.h"
#include "qlora/quant/half.h"

namespace qlora::ops {

// float32 / float16 / bfloat16; any other dtype is an Error naming `where`.
inline quant::FloatType float_type(at::ScalarType t, const std::string& where) {
  switch (t) {
    case at::kFloat:
      return quant::FloatType::kF32;
    case at::kHalf:
      return quant::FloatType::kF16;
    case at::kBFloat16:
      return quant::FloatType::kBF16;
    default:
      fail(where + ": dtype " + std::string(c10::toString(t)) + " is not float32, float16 or bfloat16");
  }
}

}  // namespace qlora::ops
