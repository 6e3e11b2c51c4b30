// nn::sdpa_attention and the attn_implementation choice: agreement with eager_attention, GQA, fully
// masked rows (never NaN), the cast of a float32 finfo.min mask to half types, and the parse errors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "../error_of.h"
#include "parity.h"
#include "qlora/nn/attention.h"

namespace qlora::nn {
namespace {

using qlora::testing::expect_close;

// fp32; the fused kernel sums in another order than matmul + softmax + matmul: ~1e-7 relative.
constexpr double kTol = 1e-6;

TEST(Sdpa, MatchesEagerWithAdditiveBiasAndScale) {
  at::manual_seed(0);
  const at::Tensor q = at::randn({2, 4, 5, 8}), k = at::randn({2, 4, 7, 8}), v = at::randn({2, 4, 7, 8});
  const at::Tensor bias = at::randn({1, 4, 5, 7});
  for (const double scale : {1.0, 0.5, 0.125}) {
    expect_close("sdpa scale " + std::to_string(scale), sdpa_attention(q, k, v, bias, scale),
                 eager_attention(q, k, v, bias, 0.0, scale, {}), kTol);
  }
  expect_close("sdpa no bias", sdpa_attention(q, k, v, {}, 1.0 / std::sqrt(8.0)),
               eager_attention(q, k, v, {}, 0.0, {}), kTol);
}

TEST(Sdpa, RepeatsKeyValueHeadsForGroupedQueries) {
  at::manual_seed(1);
  const at::Tensor q = at::randn({1, 6, 4, 8}), k = at::randn({1, 2, 4, 8}), v = at::randn({1, 2, 4, 8});
  // kv head j serves q heads 3j .. 3j + 2 (transformers' repeat_kv).
  const at::Tensor ref =
      eager_attention(q, k.repeat_interleave(3, 1), v.repeat_interleave(3, 1), {}, 0.0, {});
  expect_close("gqa", sdpa_attention(q, k, v, {}, 1.0 / std::sqrt(8.0)), ref, kTol);
  EXPECT_NE(qlora_test::error_of([&] {
              sdpa_attention(q, k.narrow(1, 0, 1).repeat({1, 4, 1, 1}), v, {}, 1.0);
            }).find("query heads"),
            std::string::npos);
}

// A query whose keys are all masked (a left pad in generation): eager's finfo.min bias gives it uniform
// weights; sdpa must too, never NaN, even when the float32 mask is cast to bf16 / fp16 (a plain cast of
// float32's lowest overflows to -inf there). In fp16, finfo.min = -65504 does not swamp the scores when
// the kernel adds them in float32: the row is then the softmax of its raw scores, finite, unused (its
// output is a pad's), so only finiteness is checked there; rows with allowed keys match eager.
TEST(Sdpa, FullyMaskedRowIsUniformNotNan) {
  at::manual_seed(2);
  for (const at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    const at::Tensor q = at::randn({1, 2, 3, 8}).to(dtype), k = at::randn({1, 2, 3, 8}).to(dtype);
    const at::Tensor v = at::randn({1, 2, 3, 8}).to(dtype);
    at::Tensor keep = at::ones({1, 1, 3, 3}, at::kBool);
    keep.select(2, 0).fill_(false);  // query 0 sees no key
    const at::Tensor bias = at::zeros({1, 1, 3, 3}).masked_fill(keep.logical_not(), dtype_lowest(at::kFloat));
    const at::Tensor out = sdpa_attention(q, k, v, bias, 1.0);
    EXPECT_TRUE(at::isfinite(out).all().item<bool>()) << c10::toString(dtype);
    if (dtype != at::kHalf) {
      expect_close(std::string("uniform row ") + c10::toString(dtype), out.select(2, 0).to(at::kFloat),
                   v.to(at::kFloat).mean(2), dtype == at::kFloat ? kTol : 1e-2);
    }
    const at::Tensor ref =
        eager_attention(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), bias, 0.0, 1.0, {});
    expect_close(std::string("rows with keys ") + c10::toString(dtype), out.narrow(2, 1, 2).to(at::kFloat),
                 ref.narrow(2, 1, 2), dtype == at::kFloat ? kTol : 2e-2);
  }
}

TEST(Sdpa, DropoutWhileTrainingKeepsEager) {
  ForwardContext train;
  train.training = true;
  EXPECT_TRUE(use_sdpa(AttnImplementation::kSdpa, 0.0, train));
  EXPECT_FALSE(use_sdpa(AttnImplementation::kSdpa, 0.1, train));
  EXPECT_TRUE(use_sdpa(AttnImplementation::kSdpa, 0.1, {}));  // no dropout at inference
  EXPECT_FALSE(use_sdpa(AttnImplementation::kEager, 0.0, {}));
}

TEST(Sdpa, UnknownImplementationNamesTheKeyAndChoices) {
  EXPECT_EQ(parse_attn_implementation("sdpa", "k"), AttnImplementation::kSdpa);
  EXPECT_EQ(parse_attn_implementation("eager", "k"), AttnImplementation::kEager);
  const std::string err =
      qlora_test::error_of([] { parse_attn_implementation("flash", "--attn-implementation"); });
  EXPECT_NE(err.find("--attn-implementation"), std::string::npos) << err;
  EXPECT_NE(err.find("'flash' is not one of sdpa, eager"), std::string::npos) << err;
}

}  // namespace
}  // namespace qlora::nn
