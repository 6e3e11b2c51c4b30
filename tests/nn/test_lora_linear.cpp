// The LoRA seam: y = x W^T + b + B(A(dropout(x))) * scaling, with PEFT's identities.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include "parity.h"
#include "qlora/core/error.h"
#include "qlora/nn/lora_linear.h"

namespace qlora::nn {
namespace {

at::Generator seeded(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// A [5 -> 7] projection with a rank-3 adapter (odd sizes on purpose), input [2, 4, 5].
struct Fixture {
  Linear layer;
  at::Tensor x;
};

Fixture make(double scaling = 2.0) {
  at::Generator g = seeded(1);
  Fixture f;
  f.layer.base.weight = at::randn({7, 5}, g);
  f.layer.base.bias = at::randn({7}, g);
  f.layer.lora.A = at::randn({3, 5}, g);
  f.layer.lora.B = at::randn({7, 3}, g);
  f.layer.lora.scaling = scaling;
  f.x = at::randn({2, 4, 5}, g);
  return f;
}

at::Tensor base_only(const Fixture& f) { return at::linear(f.x, f.layer.base.weight, f.layer.base.bias); }

// Our result and the reference differ only in float32 rounding: the order of sums over K <= 5 (which
// MKL / oneDNN choose differently on AVX2 and AVX-512 machines) and, merged, one rounding of
// W + s B A (entries up to ~20). A few float32 eps of the largest output (~50 here) covers both; a
// wrong scale or a dropped term changes outputs by O(1). Relative bound: tests/parity.h.
constexpr double kTol = 2e-6;
using qlora::testing::expect_close;

TEST(LoraLinear, NoAdapterIsPlainLinear) {
  Fixture f = make();
  f.layer.lora = LoraAdapter{};
  EXPECT_TRUE(at::equal(lora_linear(f.x, f.layer, {}), base_only(f)));
}

TEST(LoraLinear, ZeroBIsBaseExactly) {
  Fixture f = make();
  f.layer.lora.B.zero_();
  EXPECT_TRUE(at::equal(lora_linear(f.x, f.layer, {}), base_only(f)));
}

TEST(LoraLinear, DisabledAdapterIsBaseExactly) {
  Fixture f = make();
  f.layer.lora.enabled = false;
  EXPECT_TRUE(at::equal(lora_linear(f.x, f.layer, {}), base_only(f)));
}

TEST(LoraLinear, AddsScaledLowRankTerm) {
  Fixture f = make(/*scaling=*/2.0);
  const at::Tensor expected =
      base_only(f) + at::matmul(at::matmul(f.x, f.layer.lora.A.t()), f.layer.lora.B.t()) * 2.0;
  expect_close("lora_linear vs composite", lora_linear(f.x, f.layer, {}), expected, kTol);
}

TEST(LoraLinear, ScalingIsLinearInTheDelta) {
  Fixture f = make(/*scaling=*/1.0);
  const at::Tensor base = base_only(f);
  const at::Tensor d1 = lora_linear(f.x, f.layer, {}) - base;
  f.layer.lora.scaling = 3.0;
  const at::Tensor d3 = lora_linear(f.x, f.layer, {}) - base;
  expect_close("delta at scaling 3 vs 3 x delta at 1", d3, d1 * 3.0, kTol);
}

TEST(LoraLinear, MergedEqualsUnmerged) {
  Fixture f = make();
  const at::Tensor unmerged = lora_linear(f.x, f.layer, {});
  merge_adapter(f.layer);
  EXPECT_TRUE(f.layer.lora.merged);
  // Merged: the adapter term is skipped, the weight carries it.
  expect_close("merged vs unmerged", lora_linear(f.x, f.layer, {}), unmerged, kTol);
  merge_adapter(f.layer);  // merging twice is a no-op
  expect_close("merged twice vs unmerged", lora_linear(f.x, f.layer, {}), unmerged, kTol);
}

TEST(LoraLinear, MergeUnmergeRoundTripRestoresWeight) {
  Fixture f = make();
  const at::Tensor w = f.layer.base.weight.clone();
  merge_adapter(f.layer);
  EXPECT_FALSE(at::allclose(f.layer.base.weight, w, 0, kTol));
  unmerge_adapter(f.layer);
  EXPECT_FALSE(f.layer.lora.merged);
  // (W + d) - d in float32: exact up to one rounding of each add.
  EXPECT_TRUE(at::allclose(f.layer.base.weight, w, 0, 1e-6));
}

TEST(LoraLinear, DeltaWeightIsBTimesATimesScaling) {
  Fixture f = make(/*scaling=*/0.5);
  const at::Tensor delta = lora_delta_weight(f.layer.lora, at::kFloat);
  EXPECT_EQ(delta.sizes(), f.layer.base.weight.sizes());
  expect_close("delta weight", delta, at::matmul(f.layer.lora.B, f.layer.lora.A) * 0.5, kTol);
  EXPECT_EQ(lora_delta_weight(f.layer.lora, at::kBFloat16).scalar_type(), at::kBFloat16);
  EXPECT_THROW(lora_delta_weight(LoraAdapter{}, at::kFloat), Error);
}

TEST(LoraLinear, DropoutOnlyInTraining) {
  Fixture f = make();
  f.layer.lora.dropout = 0.5;
  const at::Tensor no_dropout = [&] {
    Linear l = f.layer;
    l.lora.dropout = 0.0;
    return lora_linear(f.x, l, {});
  }();
  EXPECT_TRUE(at::equal(lora_linear(f.x, f.layer, {/*training=*/false, seeded(3)}), no_dropout));
  const at::Tensor trained = lora_linear(f.x, f.layer, {/*training=*/true, seeded(3)});
  EXPECT_FALSE(at::allclose(trained, no_dropout, 0, kTol));
  // Same generator seed, same mask.
  EXPECT_TRUE(at::equal(trained, lora_linear(f.x, f.layer, {/*training=*/true, seeded(3)})));
}

TEST(LoraLinear, DropoutTouchesOnlyTheAdapterInput) {
  Fixture f = make();
  f.layer.lora.dropout = 0.9;
  f.layer.lora.B.zero_();  // adapter term is zero whatever the mask: output must be the base
  EXPECT_TRUE(at::equal(lora_linear(f.x, f.layer, {/*training=*/true, seeded(4)}), base_only(f)));
}

TEST(LoraLinear, DropoutScalesKeptValues) {
  const at::Tensor x = at::ones({1000});
  const at::Tensor y = dropout(x, 0.25, {/*training=*/true, seeded(5)});
  // Kept entries are x / (1 - p); dropped are 0.
  EXPECT_TRUE(at::logical_or(y.eq(0), at::isclose(y, at::full_like(y, 1.0 / 0.75))).all().item<bool>());
  const double kept = y.ne(0).to(at::kDouble).mean().item<double>();
  EXPECT_NEAR(kept, 0.75, 0.05);  // 1000 Bernoulli(0.75) draws: std 0.014
  EXPECT_TRUE(at::equal(dropout(x, 0.25, {/*training=*/false, {}}), x));
}

TEST(LoraLinear, GradientsReachAAndB) {
  Fixture f = make();
  f.layer.lora.A.requires_grad_(true);
  f.layer.lora.B.requires_grad_(true);
  lora_linear(f.x, f.layer, {}).sum().backward();
  ASSERT_TRUE(f.layer.lora.A.grad().defined());
  ASSERT_TRUE(f.layer.lora.B.grad().defined());
  // d(sum)/dB = scaling * sum_rows(1^T (x A^T)) for every output row.
  const at::Tensor xa = at::matmul(f.x.reshape({-1, 5}), f.layer.lora.A.detach().t());  // [8, 3]
  const at::Tensor expected_b = xa.sum(0).unsqueeze(0).expand({7, 3}) * f.layer.lora.scaling;
  expect_close("grad B", f.layer.lora.B.grad(), expected_b, kTol);
}

TEST(LoraLinear, HalfInputWithFloatAdapterKeepsInputDtype) {
  Fixture f = make();
  f.layer.base.weight = f.layer.base.weight.to(at::kBFloat16);
  f.layer.base.bias = f.layer.base.bias.to(at::kBFloat16);
  const at::Tensor y = lora_linear(f.x.to(at::kBFloat16), f.layer, {});
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
}

}  // namespace
}  // namespace qlora::nn
