// Shared helpers of the encoder tests: fixture paths, HF dumps, and closeness checks that print the
// measured difference so that parity numbers are visible in the test log.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "parity.h"
#include "qlora/io/safetensors.h"
#include "qlora/models/encoder.h"

namespace qlora::models::testing {

inline std::string model_dir(const std::string& name) {
  return std::string(QLORA_FIXTURES_DIR) + "/models/" + name;
}

// hf_outputs.safetensors of a fixture model: "<batch>.<what>" tensors written by tools/gen_xlmr_fixtures.py.
inline SafetensorsFile hf_outputs(const std::string& name) {
  return SafetensorsFile::open(model_dir(name) + "/hf_outputs.safetensors");
}

inline EncoderInputs inputs_of(const SafetensorsFile& dump, const std::string& batch, bool with_types) {
  EncoderInputs in;
  in.input_ids = dump.tensor(batch + ".input_ids");
  in.attention_mask = dump.tensor(batch + ".attention_mask");
  if (with_types) in.token_type_ids = dump.tensor(batch + ".token_type_ids");
  return in;
}

// max|actual - expected| relative to the reference's magnitude: tests/parity.h says why.
using qlora::testing::expect_close;
using qlora::testing::max_abs_diff;

// Hidden states compared at real tokens only: HF's values at padded positions are not used by anything.
inline void expect_close_unpadded(const std::string& what, const at::Tensor& hidden,
                                  const at::Tensor& expected, const at::Tensor& mask, double tol) {
  ASSERT_EQ(hidden.sizes(), expected.sizes()) << what;
  const at::Tensor keep = mask.to(at::kBool);  // [B, T]
  expect_close(what, hidden.detach().index({keep}), expected.index({keep}), tol);
}

}  // namespace qlora::models::testing
