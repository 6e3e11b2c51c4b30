// Shared helpers of the T5 tests: fixture folders written by tools/gen_t5_fixtures.py and the HF dumps.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "parity.h"
#include "qlora/io/safetensors.h"

namespace qlora::models::t5_testing {

// "t5_v1_0" (relu, tied), "t5_v1_1" (gated-gelu, separate lm_head), "t5_mt5", "t5_v1_1_lora" (adapter).
inline std::string t5_dir(const std::string& name) {
  return std::string(QLORA_FIXTURES_DIR) + "/models/" + name;
}

inline SafetensorsFile t5_dump(const std::string& name) {
  return SafetensorsFile::open(t5_dir(name) + "/hf_outputs.safetensors");
}

// max|actual - expected| relative to the reference's magnitude: tests/parity.h says why.
using qlora::testing::expect_close;
using qlora::testing::max_abs_diff;

}  // namespace qlora::models::t5_testing
