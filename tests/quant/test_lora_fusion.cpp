// Fused LoRA ops (ops/lora_fusion.h): lora_add_ (the inference epilogue), lora_merge_ and lora_merge_4bit.
// CPU: lora_add_'s loops against float64 math; merges bit-equal to the ATen composite nn::merge_adapter
// has always used, and the CUDA kernel's formula (as CPU loops) close to that composite. CUDA: every
// kernel bit for bit against its CPU formula (skips without a device).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "bnb_fixtures.h"
#include "error_of.h"
#include "qlora/ops/lora_fusion.h"
#include "qlora/ops/quantize.h"

namespace {

using qlora_test::bytes_equal;

constexpr double kU32 = 1.0 / (1 << 24);

double unit_roundoff(at::ScalarType t) {
  return t == at::kBFloat16 ? 1.0 / (1 << 8) : t == at::kHalf ? 1.0 / (1 << 11) : kU32;
}

// Half the smallest subnormal step of float16 (2^-25), the absolute error of rounding near zero; float32
// and bfloat16 values here never get that small without being exactly zero.
constexpr double kTinyAbs = 1.0 / (1 << 25);

::testing::AssertionResult within(const at::Tensor& got, const at::Tensor& want, const at::Tensor& bound) {
  const at::Tensor g = got.to(at::kCPU, at::kDouble), w = want.to(at::kCPU, at::kDouble);
  if (g.sizes() != w.sizes())
    return ::testing::AssertionFailure() << "shape " << g.sizes() << " vs " << w.sizes();
  const at::Tensor excess = ((g - w).abs() - bound.to(at::kCPU, at::kDouble)).reshape(-1);
  const int64_t worst = excess.argmax().item<int64_t>();
  if (excess[worst].item<double>() > 0) {
    return ::testing::AssertionFailure()
           << "element " << worst << ": got " << g.reshape(-1)[worst].item<double>() << ", want "
           << w.reshape(-1)[worst].item<double>() << ", bound " << bound.reshape(-1)[worst].item<double>();
  }
  return ::testing::AssertionSuccess();
}

const std::vector<at::ScalarType> kDtypes = {at::kFloat, at::kHalf, at::kBFloat16};

std::string dtypes(at::ScalarType a, at::ScalarType b) {
  return std::string(c10::toString(a)) + "/" + std::string(c10::toString(b));
}

struct Shape {
  int64_t M, N, R;
};
// Odd sizes, a rank of one, ranks on both sides of the kernel's 32-wide rank chunk and its 32 x 64 tile,
// and the largest LoRA rank (128).
const std::vector<Shape> kShapes = {{5, 7, 3}, {1, 1, 1}, {33, 65, 32}, {70, 130, 33}, {13, 65, 128}};

// ---------------------------------------------------------------------------------------------- lora_add_

TEST(LoraAdd, CpuMatchesFloat64MathAcrossDtypes) {
  at::manual_seed(1);
  for (const Shape& sh : kShapes) {
    for (const auto yt : kDtypes) {
      for (const auto at_ : kDtypes) {
        SCOPED_TRACE(dtypes(yt, at_) + " M" + std::to_string(sh.M) + " N" + std::to_string(sh.N) + " R" +
                     std::to_string(sh.R));
        const at::Tensor y0 = at::randn({sh.M, sh.N}).to(yt);
        const at::Tensor t = at::randn({sh.M, sh.R}).to(at_), B = at::randn({sh.N, sh.R}).to(at_);
        const double scale = 0.75;
        at::Tensor y = y0.clone();
        qlora::ops::lora_add_(y, t, B, scale);
        const at::Tensor td = t.to(at::kDouble), bd = B.to(at::kDouble), yd = y0.to(at::kDouble);
        const at::Tensor exact = yd + scale * at::matmul(td, bd.t());
        // float32: the rank-R fma chain is within R u32 sum|t b| and the final fma adds u32 |result|;
        // then one rounding to y's dtype, u_y |exact|. Nothing looser: a missing scale, a transposed B or
        // a second rounding in a half type all break it.
        const at::Tensor bound = unit_roundoff(yt) * exact.abs() +
                                 (sh.R + 2) * kU32 * (yd.abs() + scale * at::matmul(td.abs(), bd.abs().t())) +
                                 kTinyAbs;
        EXPECT_EQ(y.scalar_type(), yt);
        EXPECT_TRUE(within(y, exact, bound));
      }
    }
  }
}

TEST(LoraAdd, CpuIsTheKernelFormulaBitForBit) {
  // The spec the CUDA kernel is tested against: acc = fma chain over r in order, y = round(fma(s, acc, y)).
  at::manual_seed(2);
  const at::Tensor y0 = at::randn({4, 6}).to(at::kBFloat16);
  const at::Tensor t = at::randn({4, 5}), B = at::randn({6, 5});
  at::Tensor y = y0.clone();
  qlora::ops::lora_add_(y, t, B, 0.3);
  at::Tensor want = at::empty_like(y0);
  for (int64_t m = 0; m < 4; ++m) {
    for (int64_t n = 0; n < 6; ++n) {
      float acc = 0.0f;
      for (int64_t r = 0; r < 5; ++r) acc = std::fma(t[m][r].item<float>(), B[n][r].item<float>(), acc);
      want[m][n] = std::fma(0.3f, acc, y0[m][n].item<float>());  // assignment rounds to bfloat16 (RNE)
    }
  }
  EXPECT_TRUE(bytes_equal(y, want));
}

TEST(LoraAdd, StridedViewsGiveTheSameBitsAsContiguous) {
  at::manual_seed(3);
  for (const auto yt : kDtypes) {
    SCOPED_TRACE(c10::toString(yt));
    const int64_t M = 7, N = 9, R = 3;
    const at::Tensor t_data = at::randn({M, R + 4}).narrow(1, 2, R);  // column slice: row stride R + 4
    const at::Tensor b_data = at::randn({R, N}).t();                  // transposed: [N, R], stride (1, N)
    at::Tensor wide = at::randn({M, N + 5}).to(yt);
    const at::Tensor wide0 = wide.clone();
    at::Tensor y = wide.narrow(1, 3, N);  // a row view of a wider output (row stride N + 5)
    at::Tensor want = y.contiguous();
    qlora::ops::lora_add_(want, t_data.contiguous(), b_data.contiguous(), -1.5);
    qlora::ops::lora_add_(y, t_data, b_data, -1.5);
    EXPECT_TRUE(bytes_equal(y, want));
    // Columns outside the view are untouched.
    EXPECT_TRUE(bytes_equal(wide.narrow(1, 0, 3), wide0.narrow(1, 0, 3)));
    EXPECT_TRUE(bytes_equal(wide.narrow(1, 3 + N, 2), wide0.narrow(1, 3 + N, 2)));
    // A transposed y (column stride != 1).
    at::Tensor yt_data = at::randn({N, M}).to(yt);
    at::Tensor y_t = yt_data.t();
    at::Tensor want_t = y_t.contiguous();
    qlora::ops::lora_add_(want_t, t_data, b_data, 2.0);
    qlora::ops::lora_add_(y_t, t_data, b_data, 2.0);
    EXPECT_TRUE(bytes_equal(y_t, want_t));
  }
}

TEST(LoraAdd, RejectsBadInput) {
  at::Tensor y = at::zeros({4, 6});
  const at::Tensor t = at::randn({4, 2}), B = at::randn({6, 2});
  EXPECT_NE(qlora_test::error_of([&] {
              qlora::ops::lora_add_(y, t, at::randn({5, 2}), 1.0);
            }).find("expected y"),
            std::string::npos);
  EXPECT_NE(
      qlora_test::error_of([&] { qlora::ops::lora_add_(y, t, B.to(at::kHalf), 1.0); }).find("adapter dtype"),
      std::string::npos);
  at::Tensor yd = at::zeros({4, 6}, at::kDouble);
  EXPECT_NE(qlora_test::error_of([&] { qlora::ops::lora_add_(yd, t, B, 1.0); }).find("not float32"),
            std::string::npos);
  const at::Tensor tg = t.clone().requires_grad_(true);
  EXPECT_NE(qlora_test::error_of([&] { qlora::ops::lora_add_(y, tg, B, 1.0); }).find("no autograd"),
            std::string::npos);
  {
    at::NoGradGuard no_grad;  // fine without grad mode
    qlora::ops::lora_add_(y, tg, B, 1.0);
  }
  at::Tensor expanded = at::zeros({1, 6}).expand({4, 6});
  EXPECT_NE(qlora_test::error_of([&] { qlora::ops::lora_add_(expanded, t, B, 1.0); }).find("overlapping"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------- merges

// What nn::merge_adapter has always run (lora_delta_weight + add_ / sub_).
at::Tensor composite_merge(const at::Tensor& W, const at::Tensor& A, const at::Tensor& B, double scale,
                           bool subtract) {
  const at::Tensor delta = (at::matmul(B.to(at::kFloat), A.to(at::kFloat)) * scale).to(W.scalar_type());
  return subtract ? W - delta : W + delta;
}

struct MergeShape {
  int64_t N, K, R;
};
const std::vector<MergeShape> kMergeShapes = {
    {7, 65, 3}, {1, 1, 1}, {33, 130, 32}, {70, 67, 33}, {13, 65, 128}};

TEST(LoraMerge, CpuIsTheCompositeBitForBit) {
  at::manual_seed(4);
  for (const MergeShape& sh : kMergeShapes) {
    for (const auto wt : kDtypes) {
      for (const auto at_ : kDtypes) {
        for (const bool subtract : {false, true}) {
          SCOPED_TRACE(dtypes(wt, at_) + (subtract ? " unmerge" : " merge") + " N" + std::to_string(sh.N));
          const at::Tensor W0 = at::randn({sh.N, sh.K}).to(wt);
          const at::Tensor A = at::randn({sh.R, sh.K}).to(at_), B = at::randn({sh.N, sh.R}).to(at_);
          at::Tensor W = W0.clone();
          qlora::ops::lora_merge_(W, A, B, 0.625, subtract);
          EXPECT_TRUE(bytes_equal(W, composite_merge(W0, A, B, 0.625, subtract)));
        }
      }
    }
  }
}

TEST(LoraMerge, KernelFormulaIsCloseToTheComposite) {
  at::manual_seed(5);
  for (const MergeShape& sh : kMergeShapes) {
    for (const auto wt : kDtypes) {
      for (const auto at_ : kDtypes) {
        for (const bool subtract : {false, true}) {
          SCOPED_TRACE(dtypes(wt, at_) + (subtract ? " unmerge" : " merge") + " N" + std::to_string(sh.N));
          const at::Tensor W0 = at::randn({sh.N, sh.K}).to(wt);
          const at::Tensor A = at::randn({sh.R, sh.K}).to(at_), B = at::randn({sh.N, sh.R}).to(at_);
          const double scale = 0.625;
          at::Tensor W = W0.clone();
          qlora::ops::lora_merge_kernel_formula_(W, A, B, scale, subtract);
          const at::Tensor want = composite_merge(W0, A, B, scale, subtract);
          // Both float32 deltas are within R u32 scale sum|B||A| of exact (different summation order / FMA);
          // rounding the delta to W's dtype can then land one ulp (<= 2 u_w |d|) apart, and the sum one
          // more ulp (<= 2 u_w |W'|). Exact equality is not expected in float32: the orders differ.
          const double u = unit_roundoff(wt);
          const at::Tensor sab = scale * at::matmul(B.to(at::kDouble).abs(), A.to(at::kDouble).abs());
          const at::Tensor bound =
              2 * u * (want.to(at::kDouble).abs() + sab) + 2 * (sh.R + 1) * kU32 * sab + kTinyAbs;
          EXPECT_TRUE(within(W, want, bound));
        }
      }
    }
  }
}

TEST(LoraMerge, RankOneKernelFormulaIsTheCompositeBitForBit) {
  // With R = 1 both deltas are the single float32 product b * a, scaled: any difference left is in the
  // rounding steps, which must be the composite's (delta rounded to W's dtype, then the sum rounded).
  at::manual_seed(12);
  for (const auto wt : kDtypes) {
    for (const auto at_ : kDtypes) {
      for (const bool subtract : {false, true}) {
        SCOPED_TRACE(dtypes(wt, at_) + (subtract ? " unmerge" : " merge"));
        const at::Tensor W0 = at::randn({37, 65}).to(wt);
        const at::Tensor A = at::randn({1, 65}).to(at_), B = at::randn({37, 1}).to(at_);
        at::Tensor W = W0.clone();
        qlora::ops::lora_merge_kernel_formula_(W, A, B, 0.3, subtract);
        EXPECT_TRUE(bytes_equal(W, composite_merge(W0, A, B, 0.3, subtract)));
      }
    }
  }
  // A hand-made case where rounding the delta first matters: d = 2^-8 + 2^-17 rounds to 2^-8 in
  // bfloat16, and 1 + 2^-8 is a tie that goes to 1 (even); adding the unrounded d would give 1 + 2^-7.
  at::Tensor W = at::ones({1, 1}, at::kBFloat16);
  qlora::ops::lora_merge_kernel_formula_(W, at::full({1, 1}, 1.0f / 256 + 1.0f / 131072), at::ones({1, 1}),
                                         1.0, false);
  EXPECT_EQ(W.item<float>(), 1.0f);
}

TEST(LoraMerge, KernelFormulaHonoursStrides) {
  at::manual_seed(6);
  for (const auto wt : kDtypes) {
    at::Tensor Wt = at::randn({65, 7}).to(wt);
    at::Tensor W = Wt.t();  // [7, 65], column stride 7
    at::Tensor want = W.contiguous();
    const at::Tensor A = at::randn({65, 3}).t(), B = at::randn({3, 7}).t();
    qlora::ops::lora_merge_kernel_formula_(want, A.contiguous(), B.contiguous(), 1.25, false);
    qlora::ops::lora_merge_kernel_formula_(W, A, B, 1.25, false);
    EXPECT_TRUE(bytes_equal(W, want)) << c10::toString(wt);
  }
}

TEST(LoraMerge4bit, CpuIsDensifyThenAddBitForBit) {
  at::manual_seed(7);
  for (const auto qt : {qlora::ops::QuantType::kNf4, qlora::ops::QuantType::kFp4}) {
    for (const bool dq : {false, true}) {
      const auto s = qlora::ops::quantize_4bit(at::randn({13, 65}), qt, 64, dq);
      const at::Tensor A = at::randn({3, 65}), B = at::randn({13, 3});
      for (const auto wt : kDtypes) {
        SCOPED_TRACE(qlora::ops::quant_type_name(qt) + (dq ? " dq " : " ") + c10::toString(wt));
        const at::Tensor want = composite_merge(qlora::ops::dequantize_4bit(s, wt), A, B, 2.0, false);
        EXPECT_TRUE(bytes_equal(qlora::ops::lora_merge_4bit(s, A, B, 2.0, wt), want));
      }
    }
  }
}

TEST(LoraMerge, RejectsBadInput) {
  at::Tensor W = at::zeros({4, 6});
  EXPECT_NE(qlora_test::error_of([&] {
              qlora::ops::lora_merge_(W, at::randn({2, 5}), at::randn({4, 2}), 1, false);
            }).find("expected A"),
            std::string::npos);
  const auto s = qlora::ops::quantize_4bit(at::randn({4, 6}), qlora::ops::QuantType::kNf4);
  EXPECT_NE(qlora_test::error_of([&] {
              qlora::ops::lora_merge_4bit(s, at::randn({2, 6}), at::randn({5, 2}), 1, at::kFloat);
            }).find("expected A"),
            std::string::npos);
  at::Tensor Wg = W.clone().requires_grad_(true);
  EXPECT_NE(qlora_test::error_of([&] {
              qlora::ops::lora_merge_(Wg, at::randn({2, 6}), at::randn({4, 2}), 1, false);
            }).find("no autograd"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------- CUDA

TEST(LoraFusionCuda, LoraAddMatchesCpuBitForBit) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device on this machine (kernels compiled but not run)";
  at::manual_seed(8);
  for (const Shape& sh : kShapes) {
    for (const auto yt : kDtypes) {
      for (const auto at_ : kDtypes) {
        SCOPED_TRACE(dtypes(yt, at_) + " M" + std::to_string(sh.M) + " N" + std::to_string(sh.N) + " R" +
                     std::to_string(sh.R));
        // Strided on purpose: y a row view of a wider output, t a column slice, B a transposed view.
        const at::Tensor wide = at::randn({sh.M, sh.N + 3}).to(yt);
        const at::Tensor t = at::randn({sh.M, sh.R + 2}).to(at_).narrow(1, 1, sh.R);
        const at::Tensor B = at::randn({sh.R, sh.N}).to(at_).t();
        at::Tensor y_cpu = wide.clone().narrow(1, 2, sh.N);
        qlora::ops::lora_add_(y_cpu, t, B, 0.375);
        at::Tensor wide_gpu = wide.cuda();
        at::Tensor y_gpu = wide_gpu.narrow(1, 2, sh.N);
        qlora::ops::lora_add_(y_gpu, t.cuda(), B.cuda(), 0.375);
        // Same fma chain in the same order, same final fma and round-to-nearest-even: identical bits.
        EXPECT_TRUE(bytes_equal(y_gpu.cpu(), y_cpu));
        EXPECT_TRUE(bytes_equal(wide_gpu.narrow(1, 0, 2).cpu(), wide.narrow(1, 0, 2)));
      }
    }
  }
}

TEST(LoraFusionCuda, MergeMatchesKernelFormulaBitForBitAndCompositeClosely) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device on this machine (kernels compiled but not run)";
  at::manual_seed(9);
  for (const MergeShape& sh : kMergeShapes) {
    for (const auto wt : kDtypes) {
      for (const auto at_ : kDtypes) {
        for (const bool subtract : {false, true}) {
          SCOPED_TRACE(dtypes(wt, at_) + (subtract ? " unmerge" : " merge") + " N" + std::to_string(sh.N));
          const at::Tensor W0 = at::randn({sh.N, sh.K}).to(wt);
          const at::Tensor A = at::randn({sh.R, sh.K}).to(at_), B = at::randn({sh.N, sh.R}).to(at_);
          at::Tensor want = W0.clone();
          qlora::ops::lora_merge_kernel_formula_(want, A, B, 0.625, subtract);
          at::Tensor Wg = W0.cuda();
          qlora::ops::lora_merge_(Wg, A.cuda(), B.cuda(), 0.625, subtract);
          EXPECT_TRUE(bytes_equal(Wg.cpu(), want));
          // And the GPU composite (cuBLAS delta) is within the CPU test's bound of it.
          const at::Tensor comp = composite_merge(W0.cuda(), A.cuda(), B.cuda(), 0.625, subtract).cpu();
          const at::Tensor sab = 0.625 * at::matmul(B.to(at::kDouble).abs(), A.to(at::kDouble).abs());
          const double u = unit_roundoff(wt);
          EXPECT_TRUE(within(
              Wg, comp, 2 * u * (comp.to(at::kDouble).abs() + sab) + 2 * (sh.R + 1) * kU32 * sab + kTinyAbs));
        }
      }
    }
  }
}

TEST(LoraFusionCuda, Merge4bitIsDequantizeThenKernelFormulaBitForBit) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device on this machine (kernels compiled but not run)";
  at::manual_seed(10);
  for (const auto qt : {qlora::ops::QuantType::kNf4, qlora::ops::QuantType::kFp4}) {
    for (const bool dq : {false, true}) {
      for (const int64_t bs : {int64_t{64}, int64_t{4096}}) {
        const auto s = qlora::ops::quantize_4bit(at::randn({67, 131}), qt, bs, dq);
        auto g = s;
        for (at::Tensor* t : {&g.packed, &g.absmax, &g.nested_absmax, &g.nested_code, &g.offset, &g.code})
          if (t->defined()) *t = t->cuda();
        for (const auto wt : kDtypes) {
          SCOPED_TRACE(qlora::ops::quant_type_name(qt) + (dq ? " dq " : " ") + c10::toString(wt));
          const at::Tensor A = at::randn({5, 131}).to(wt), B = at::randn({67, 5}).to(wt);
          at::Tensor want = qlora::ops::dequantize_4bit(s, wt);
          qlora::ops::lora_merge_kernel_formula_(want, A, B, 1.5, false);
          EXPECT_TRUE(bytes_equal(qlora::ops::lora_merge_4bit(g, A.cuda(), B.cuda(), 1.5, wt).cpu(), want));
          // B = 0: exactly the dequantized weight (value equality: -0 + 0 = +0).
          EXPECT_TRUE(
              at::equal(qlora::ops::lora_merge_4bit(g, A.cuda(), at::zeros_like(B).cuda(), 1.5, wt).cpu(),
                        qlora::ops::dequantize_4bit(s, wt)));
        }
      }
    }
  }
}

}  // namespace
