// Where the fused LoRA kernels enter the seam: lora_linear's CUDA inference epilogue (ops::lora_add_),
// merge_adapter / unmerge_adapter on CUDA (ops::lora_merge_, lora_merge_4bit), the 4-bit training matmul
// (ops::matmul_4bit_tiled). The CPU paths must stay the ATen composite, bit for bit.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>

#include "qlora/nn/lora_linear.h"
#include "qlora/ops/lora_fusion.h"

namespace qlora::nn {
namespace {

::testing::AssertionResult same_bits(const at::Tensor& got, const at::Tensor& want) {
  if (got.scalar_type() != want.scalar_type() || got.sizes() != want.sizes()) {
    return ::testing::AssertionFailure() << "dtype/shape " << got.scalar_type() << got.sizes() << " vs "
                                         << want.scalar_type() << want.sizes();
  }
  const at::Tensor g = got.detach().cpu().contiguous(), w = want.detach().cpu().contiguous();
  if (std::memcmp(g.data_ptr(), w.data_ptr(), g.nbytes()) != 0) {
    return ::testing::AssertionFailure()
           << "max |diff| " << (g.to(at::kDouble) - w.to(at::kDouble)).abs().max().item<double>();
  }
  return ::testing::AssertionSuccess();
}

// A [65 -> 7] projection with a rank-3 adapter in `dtype` on `device`, input [2, 5, 65].
Linear make_layer(at::ScalarType dtype, at::Device device) {
  at::manual_seed(11);
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  Linear l;
  l.base.weight = at::randn({7, 65}).to(opts);
  l.base.bias = at::randn({7}).to(opts);
  l.lora.A = at::randn({3, 65}).to(opts);
  l.lora.B = at::randn({7, 3}).to(opts);
  l.lora.scaling = 1.75;
  return l;
}

ForwardContext training() {
  ForwardContext ctx;
  ctx.training = true;  // dropout stays 0: the adapter input is x itself
  return ctx;
}

// PEFT's composite, as lora_linear computes it on the CPU.
at::Tensor composite(const at::Tensor& x, const Linear& l) {
  const at::Tensor y = at::linear(x, l.base.weight, l.base.bias);
  const at::Tensor low = at::linear(at::linear(x.to(l.lora.A.scalar_type()), l.lora.A), l.lora.B);
  return y + (low * l.lora.scaling).to(y.scalar_type());
}

TEST(LoraFusionWiring, CpuInferenceIsTheCompositeBitForBit) {
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    const Linear l = make_layer(dtype, at::kCPU);
    const at::Tensor x = at::randn({2, 5, 65}).to(dtype);
    at::NoGradGuard no_grad;
    EXPECT_TRUE(same_bits(lora_linear(x, l, {}), composite(x, l)));
  }
}

TEST(LoraFusionWiring, CpuMergeOfA4bitBaseIsDensifyThenAdd) {
  Linear l = make_layer(at::kFloat, at::kCPU);
  quantize_base_4bit(l.base, ops::QuantType::kNf4, 64, true, at::kBFloat16);
  l.lora.A = l.lora.A.to(at::kBFloat16);
  l.lora.B = l.lora.B.to(at::kBFloat16);
  const at::Tensor want =
      ops::dequantize_4bit(*l.base.q4, at::kBFloat16) + lora_delta_weight(l.lora, at::kBFloat16);
  merge_adapter(l);
  EXPECT_FALSE(l.base.quantized());
  EXPECT_TRUE(same_bits(l.base.weight, want));
}

class LoraFusionWiringCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device on this machine (kernels compiled but not run)";
  }
};

TEST_F(LoraFusionWiringCuda, InferenceFusesTrainingAndAutogradKeepTheComposite) {
  for (const auto dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    Linear l = make_layer(dtype, at::kCUDA);
    const at::Tensor x = at::randn({2, 5, 65}).to(dtype).cuda();
    // Inference: base output, then the fused epilogue on [10, 7].
    at::Tensor want = at::linear(x, l.base.weight, l.base.bias).contiguous();
    at::Tensor want2 = want.view({-1, 7});
    ops::lora_add_(want2, at::linear(x, l.lora.A).reshape({-1, 3}), l.lora.B, l.lora.scaling);
    {
      at::NoGradGuard no_grad;
      EXPECT_TRUE(same_bits(lora_linear(x, l, {}), want));
    }
    EXPECT_TRUE(same_bits(lora_linear(x, l, {}), want));  // grad mode on, nothing requires grad
    // Training (dropout 0) and an adapter that requires grad: the composite.
    EXPECT_TRUE(same_bits(lora_linear(x, l, training()), composite(x, l)));
    l.lora.A.requires_grad_(true);
    EXPECT_TRUE(same_bits(lora_linear(x, l, {}), composite(x, l)));
  }
}

TEST_F(LoraFusionWiringCuda, MergeAndUnmergeUseTheKernels) {
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    Linear l = make_layer(dtype, at::kCUDA);
    at::Tensor want = l.base.weight.cpu();
    ops::lora_merge_kernel_formula_(want, l.lora.A.cpu(), l.lora.B.cpu(), l.lora.scaling, false);
    merge_adapter(l);
    EXPECT_TRUE(same_bits(l.base.weight, want));
    ops::lora_merge_kernel_formula_(want, l.lora.A.cpu(), l.lora.B.cpu(), l.lora.scaling, true);
    unmerge_adapter(l);
    EXPECT_TRUE(same_bits(l.base.weight, want));
  }
  // A 4-bit base merges in one pass into a dense compute-dtype weight.
  Linear q = make_layer(at::kFloat, at::kCUDA);
  quantize_base_4bit(q.base, ops::QuantType::kNf4, 64, true, at::kBFloat16);
  q.lora.A = q.lora.A.to(at::kBFloat16);
  q.lora.B = q.lora.B.to(at::kBFloat16);
  at::Tensor want = ops::dequantize_4bit(*q.base.q4, at::kBFloat16).cpu();
  ops::lora_merge_kernel_formula_(want, q.lora.A.cpu(), q.lora.B.cpu(), q.lora.scaling, false);
  merge_adapter(q);
  EXPECT_FALSE(q.base.quantized());
  EXPECT_TRUE(same_bits(q.base.weight, want));
}

TEST_F(LoraFusionWiringCuda, FourBitTrainingGoesThroughTheTiledMatmul) {
  Linear l = make_layer(at::kFloat, at::kCUDA);
  quantize_base_4bit(l.base, ops::QuantType::kNf4, 64, true, at::kBFloat16);
  l.lora.A = l.lora.A.to(at::kBFloat16).requires_grad_(true);
  l.lora.B = l.lora.B.to(at::kBFloat16).requires_grad_(true);
  const at::Tensor x = at::randn({2, 5, 65}).to(at::kBFloat16).cuda().requires_grad_(true);
  const at::Tensor y = lora_linear(x, l, training());
  // The base part is matmul_4bit_tiled's (10 rows > the GEMV's 8), bit for bit.
  const at::Tensor base = ops::matmul_4bit_tiled(x.detach(), *l.base.q4, l.base.bias);
  const at::Tensor low = at::linear(at::linear(x.detach(), l.lora.A.detach()), l.lora.B.detach());
  EXPECT_TRUE(same_bits(y.detach(), base + (low * l.lora.scaling).to(at::kBFloat16)));
  y.sum().backward();
  EXPECT_TRUE(x.grad().defined());
  EXPECT_TRUE(l.lora.A.grad().defined());
  EXPECT_TRUE(l.lora.B.grad().defined());
}

}  // namespace
}  // namespace qlora::nn
