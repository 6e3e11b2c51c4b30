// Float parity against reference dumps, with a bound relative to the magnitude compared.
//
// Why relative: our fp32 results and the reference's differ only by the order of float sums (transformers'
// op order, and the kernels MKL / oneDNN pick: AVX2 and AVX-512 machines sum in different orders). Such
// rounding differences grow with the magnitude of the values summed (a few ulps of the largest term, times
// a depth factor), so an absolute bound tuned on one machine's logits of magnitude ~3 fails on another
// (issue 17: T5 LoRA logits 1.14e-5 vs 1e-5 on an AVX-512 CPU). The bound is
//     tol * max(1, max|expected|)
// The floor of 1 keeps values that are small because large terms cancel (logits near 0, gradients) from
// getting a bound tighter than their partial sums allow. Formula errors (a wrong scale, mask or a missing
// bias) change the results by >= 1e-3 relative, orders of magnitude above every tol used with this.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

namespace qlora::testing {

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.detach().to(at::kDouble) - b.detach().to(at::kDouble)).abs().max().item<double>();
}

// The bound expect_close applies: tol * max(1, max|expected|).
inline double relative_bound(const at::Tensor& expected, double tol) {
  const double magnitude =
      expected.numel() == 0 ? 0.0 : expected.detach().to(at::kDouble).abs().max().item<double>();
  return tol * std::max(1.0, magnitude);
}

// max|actual - expected| <= tol * max(1, max|expected|), printing the measured value and the bound so that
// parity numbers show in the test log.
inline void expect_close(const std::string& what, const at::Tensor& actual, const at::Tensor& expected,
                         double tol) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double diff = max_abs_diff(actual, expected);
  const double bound = relative_bound(expected, tol);
  std::printf("[ parity   ] %-48s max|diff| = %.3g (bound %.2g = %.2g x max(1, |ref| max))\n", what.c_str(),
              diff, bound, tol);
  EXPECT_LE(diff, bound) << what << ": tol " << tol << " relative to the reference's magnitude";
}

// max|actual - expected| <= eps_units * 2^-23 * max|expected|: a few float32 epsilons of the tensor's
// largest value. For chains of elementwise float32 ops that are identical up to the last bit on one
// machine but not across machines: vectorized kernels (AVX2 vs AVX-512, FMA contraction) may round one
// operation differently, and an update p - u that cancels to a small value keeps the rounding error of
// its operands, so the scale is the tensor's magnitude, not each element's. A wrong formula (bias
// correction, epsilon, decay) is off by far more than a few epsilons.
inline void expect_eps_close(const std::string& what, const at::Tensor& actual, const at::Tensor& expected,
                             double eps_units) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double eps32 = 1.0 / (1 << 23);
  const double scale =
      expected.numel() == 0 ? 0.0 : expected.detach().to(at::kDouble).abs().max().item<double>();
  const double diff = max_abs_diff(actual, expected);
  std::printf("[ parity   ] %-48s max|diff| = %.3g = %.3g eps of max|ref| (bound %.3g)\n", what.c_str(), diff,
              scale > 0 ? diff / (scale * eps32) : 0.0, eps_units);
  EXPECT_LE(diff, eps_units * eps32 * scale) << what << ": more than " << eps_units << " float32 eps apart";
}

}  // namespace qlora::testing
