// Shared helpers of the T5 tests: fixture folders written by tools/gen_t5_fixtures.py and the HF dumps.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "qlora/io/safetensors.h"

namespace qlora::models::t5_testing {

// "t5_v1_0" (relu, tied), "t5_v1_1" (gated-gelu, separate lm_head), "t5_mt5", "t5_v1_1_lora" (adapter).
inline std::string t5_dir(const std::string& name) {
  return std::string(QLORA_FIXTURES_DIR) + "/models/" + name;
}

inline SafetensorsFile t5_dump(const std::string& name) {
  return SafetensorsFile::open(t5_dir(name) + "/hf_outputs.safetensors");
}

inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.detach().to(at::kDouble) - b.detach().to(at::kDouble)).abs().max().item<double>();
}

// max |actual - expected| <= tol, printing the measured value so parity numbers show in the test log.
inline void expect_close(const std::string& what, const at::Tensor& actual, const at::Tensor& expected,
                         double tol) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const double diff = max_abs_diff(actual, expected);
  std::printf("[ parity   ] %-48s max|diff| = %.3g (tol %.2g)\n", what.c_str(), diff, tol);
  EXPECT_LE(diff, tol) << what;
}

}  // namespace qlora::models::t5_testing
