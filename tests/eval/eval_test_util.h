// Helpers shared by the eval tests: fixture paths, the F1 tolerance and error capture.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>

#include "error_of.h"
#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"

namespace qlora_eval_test {

inline std::string fixture(const std::string& name) {
  return std::string(QLORA_FIXTURES_DIR) + "/eval/" + name;
}

inline const qlora::Json& squad_cases() {
  static const qlora::Json cases = qlora::read_json_file(fixture("squad_cases.json"));
  return cases;
}

// Scores are compared within 1e-9 relative (absolute near 0), not bit for bit: the C++ code does the
// scripts' operations in the scripts' order and matches the Python 3.11 fixtures exactly, but the
// official v2 script run under Python >= 3.12 sums with compensated summation (sum() changed), which
// can move the last bits. EM values are 0/1 per question and compared exactly.
inline bool close_enough(double actual, double expected) {
  return std::abs(actual - expected) <= 1e-9 * std::max(1.0, std::abs(expected));
}

using qlora_test::error_of;

}  // namespace qlora_eval_test

#define EXPECT_CONTAINS(text, part)                          \
  EXPECT_NE(std::string(text).find(part), std::string::npos) \
      << "expected to find: " << (part) << "\n   in: " << (text)
