#include "qlora/nn/activation.h"

#include <ATen/ATen.h>

#include "qlora/core/error.h"

namespace qlora::nn {

Activation parse_activation(const std::string& name, const std::string& where) {
  if (name == "gelu") return Activation::kGeluErf;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return Activation::kGeluTanh;
  if (name == "relu") return Activation::kRelu;
  fail(where + ": unsupported activation '" + name +
       "' (supported: gelu, gelu_new, gelu_pytorch_tanh, relu)");
}

const char* activation_name(Activation act) {
  switch (act) {
    case Activation::kGeluErf:
      return "gelu";
    case Activation::kGeluTanh:
      return "gelu_new";
    case Activation::kRelu:
      return "relu";
  }
  return "?";
}

at::Tensor activate(const at::Tensor& x, Activation act) {
  switch (act) {
    case Activation::kGeluErf:
      return at::gelu(x);
    case Activation::kGeluTanh:
      return at::gelu(x, "tanh");
    case Activation::kRelu:
      return at::relu(x);
  }
  fail("activate: unknown activation");
}

}  // namespace qlora::nn
