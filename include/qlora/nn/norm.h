// Normalisation layers with their parameters, as torch.nn stores them.
#pragma once

#include <ATen/core/Tensor.h>

namespace qlora::nn {

// torch.nn.LayerNorm over the last dimension.
struct LayerNorm {
  at::Tensor weight;  // [C]
  at::Tensor bias;    // [C]
  double eps = 1e-5;  // from config.json (layer_norm_eps); never assume the class default
};

// x: [..., C] -> [..., C].
at::Tensor layer_norm(const at::Tensor& x, const LayerNorm& norm);

}  // namespace qlora::nn
