// Pointwise activations named as transformers' ACT2FN names them in config.json ("hidden_act").
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace qlora::nn {

enum class Activation {
  kGeluErf,   // "gelu": x * 0.5 * (1 + erf(x / sqrt(2)))
  kGeluTanh,  // "gelu_new", "gelu_pytorch_tanh": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  kRelu,      // "relu"
};

// Throws Error naming `where` (e.g. "config.json: hidden_act") and the supported names otherwise.
Activation parse_activation(const std::string& name, const std::string& where);
const char* activation_name(Activation act);

at::Tensor activate(const at::Tensor& x, Activation act);

}  // namespace qlora::nn
