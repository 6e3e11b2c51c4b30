// Shared blocks beside the LoRA seam: activations by HF name, the padding-mask bias, eager attention.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "qlora/core/error.h"
#include "qlora/nn/activation.h"
#include "qlora/nn/attention.h"
#include "qlora/nn/norm.h"

namespace qlora::nn {
namespace {

TEST(Activation, ParsesHfNamesAndRejectsOthers) {
  EXPECT_EQ(parse_activation("gelu", "c"), Activation::kGeluErf);
  EXPECT_EQ(parse_activation("gelu_new", "c"), Activation::kGeluTanh);
  EXPECT_EQ(parse_activation("gelu_pytorch_tanh", "c"), Activation::kGeluTanh);
  EXPECT_EQ(parse_activation("relu", "c"), Activation::kRelu);
  try {
    parse_activation("swish", "config.json: hidden_act");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json: hidden_act"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("swish"), std::string::npos) << e.what();
  }
}

TEST(Activation, GeluIsTheExactErfForm) {
  const at::Tensor x = at::linspace(-4, 4, 33, at::kDouble);
  const at::Tensor erf_form = x * 0.5 * (1 + at::erf(x / std::sqrt(2.0)));
  EXPECT_TRUE(at::allclose(activate(x, Activation::kGeluErf), erf_form, 0, 1e-12));
  const at::Tensor tanh_form =
      0.5 * x * (1 + at::tanh(std::sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x.pow(3))));
  EXPECT_TRUE(at::allclose(activate(x, Activation::kGeluTanh), tanh_form, 0, 1e-12));
  EXPECT_FALSE(at::allclose(activate(x, Activation::kGeluErf), tanh_form, 0, 1e-6));  // they do differ
}

TEST(PaddingMaskBias, IsZeroOrFinfoMin) {
  const at::Tensor mask = at::tensor({1, 1, 0}).reshape({1, 3});
  const at::Tensor f32 = padding_mask_bias(mask, at::kFloat);
  EXPECT_EQ(f32.sizes(), (std::vector<int64_t>{1, 1, 1, 3}));
  EXPECT_EQ(f32[0][0][0][0].item<float>(), 0.0f);
  EXPECT_EQ(f32[0][0][0][2].item<float>(), std::numeric_limits<float>::lowest());
  const at::Tensor bf16 = padding_mask_bias(mask, at::kBFloat16);
  EXPECT_EQ(bf16.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(std::isfinite(bf16[0][0][0][2].item<float>()));
  EXPECT_LT(bf16[0][0][0][2].item<float>(), -1e38f);
}

TEST(EagerAttention, MaskedKeysGetNoWeight) {
  at::manual_seed(0);
  const at::Tensor q = at::randn({1, 2, 3, 4}), k = at::randn({1, 2, 3, 4}), v = at::randn({1, 2, 3, 4});
  const at::Tensor bias = padding_mask_bias(at::tensor({1, 1, 0}).reshape({1, 3}), at::kFloat);
  const at::Tensor out = eager_attention(q, k, v, bias, 0.0, {});
  // The same as attending over the first two keys only.
  const at::Tensor two = eager_attention(q, k.slice(2, 0, 2), v.slice(2, 0, 2), {}, 0.0, {});
  EXPECT_TRUE(at::allclose(out, two, 0, 1e-6));
  const at::Tensor manual = at::matmul(at::softmax(at::matmul(q, k.transpose(-2, -1)) / 2.0 + bias, -1), v);
  EXPECT_TRUE(at::allclose(out, manual, 0, 1e-6));
}

TEST(Heads, SplitMergeRoundTrip) {
  const at::Tensor x = at::arange(2 * 3 * 8, at::kFloat).reshape({2, 3, 8});
  const at::Tensor h = split_heads(x, 4);
  EXPECT_EQ(h.sizes(), (std::vector<int64_t>{2, 4, 3, 2}));
  EXPECT_TRUE(at::equal(merge_heads(h), x));
  EXPECT_THROW(split_heads(x, 3), Error);
}

TEST(LayerNormBlock, UsesItsEps) {
  const at::Tensor x = at::tensor({1.0, 2.0, 3.0});
  const LayerNorm big{at::ones({3}, at::kDouble), at::zeros({3}, at::kDouble), 1.0};
  const double var = 2.0 / 3.0;
  EXPECT_NEAR(layer_norm(x, big)[2].item<double>(), 1.0 / std::sqrt(var + 1.0), 1e-12);
}

}  // namespace
}  // namespace qlora::nn
