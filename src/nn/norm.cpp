#include "qlora/nn/norm.h"

#include <ATen/ATen.h>

namespace qlora::nn {

at::Tensor layer_norm(const at::Tensor& x, const LayerNorm& norm) {
  return at::layer_norm(x, {x.size(-1)}, norm.weight, norm.bias, norm.eps);
}

}  // namespace qlora::nn
