// LLM.int8() weights and bnb's HF serialization against bitsandbytes 0.50.2 (tools/gen_bnb_fixtures.py).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>

#include "bnb_fixtures.h"
#include "qlora/ops/bnb_serialization.h"
#include "qlora/ops/int8.h"

namespace {

using qlora_test::bytes_equal;

TEST(BnbInt8, QuantizeAndMatmulsMatchBnb) {
  const auto f = qlora_test::read_bnb_fixture(qlora_test::quant_fixture("int8.safetensors"));
  const auto w = qlora::ops::quantize_int8(f.at("weight"));
  EXPECT_TRUE(bytes_equal(w.cb, f.at("CB")));
  EXPECT_TRUE(bytes_equal(w.scb, f.at("SCB")));
  // Same ATen ops in the same order as bnb's CPU paths: identical bits.
  EXPECT_TRUE(bytes_equal(qlora::ops::matmul_int8(f.at("x"), w, f.at("bias")), f.at("y_dequant")));
  EXPECT_TRUE(bytes_equal(qlora::ops::matmul_int8_lt(f.at("x"), w, f.at("bias"), 0.0), f.at("y_lt0")));
  EXPECT_TRUE(bytes_equal(qlora::ops::matmul_int8_lt(f.at("x"), w, f.at("bias"), 6.0), f.at("y_lt6")));
}

void expect_round_trip(const std::string& name) {
  SCOPED_TRACE(name);
  const auto f = qlora_test::read_bnb_fixture(qlora_test::quant_fixture(name + ".safetensors"));
  const std::string prefix = "model.layers.0.mlp.down_proj.";
  const auto lookup = [&](const std::string& k) {
    const auto it = f.tensors.find(k);
    return it == f.tensors.end() ? at::Tensor() : it->second;
  };
  const auto state = qlora::ops::quant_state_from_tensors(lookup, prefix, name);
  const auto deq = qlora_test::read_bnb_fixture(qlora_test::quant_fixture(name + "_dequant.safetensors"));
  EXPECT_TRUE(bytes_equal(qlora::ops::dequantize_4bit(state), deq.at("dequant")));
  const auto written = qlora::ops::quant_state_to_tensors(state, prefix);
  size_t seen = 0;
  for (const auto& [key, t] : written) {
    SCOPED_TRACE(key);
    ASSERT_TRUE(f.tensors.count(key));
    EXPECT_EQ(t.sizes(), f.at(key).sizes());
    EXPECT_TRUE(bytes_equal(t, f.at(key)));  // includes the JSON bytes of quant_state
    ++seen;
  }
  EXPECT_EQ(seen + 1, f.tensors.size());  // + the bias, which is not the quantizer's
}

TEST(BnbSerialization, Linear4bitStateDictRoundTripsByteForByte) {
  expect_round_trip("linear4bit_nf4_dq");
  expect_round_trip("linear4bit_fp4");
}

TEST(BnbSerialization, QuantizationConfigDefaultsAndRoundTrip) {
  std::ifstream in(qlora_test::quant_fixture("quantization_configs.json"));
  const qlora::Json all = qlora::Json::parse(in);
  const auto bare = qlora::ops::parse_bnb_config(all.at("bare_4bit"), "bare");
  EXPECT_EQ(bare.bnb_4bit_quant_type, "fp4");  // the trap: load_in_4bit alone is not NF4
  EXPECT_FALSE(bare.bnb_4bit_use_double_quant);
  EXPECT_EQ(bare.bnb_4bit_compute_dtype, "float32");
  const auto nf4 = qlora::ops::parse_bnb_config(all.at("nf4_dq"), "nf4");
  EXPECT_EQ(nf4.bnb_4bit_quant_type, "nf4");
  EXPECT_TRUE(nf4.bnb_4bit_use_double_quant);
  EXPECT_EQ(nf4.bnb_4bit_compute_dtype, "bfloat16");
  const auto i8 = qlora::ops::parse_bnb_config(all.at("int8"), "int8");
  EXPECT_TRUE(i8.load_in_8bit);
  EXPECT_EQ(i8.llm_int8_threshold, 5.0);
  ASSERT_TRUE(i8.llm_int8_skip_modules.has_value());
  for (const char* k : {"bare_4bit", "nf4_dq", "int8"}) {
    qlora::Json want = all.at(k);
    const qlora::Json got = qlora::ops::bnb_config_to_json(qlora::ops::parse_bnb_config(want, k));
    for (const auto& [key, v] : got.items()) EXPECT_EQ(v, want.at(key)) << k << "." << key;
  }
}

}  // namespace

namespace {

// json.dumps writes nested_offset (a Python float) with repr: the shortest round-trip digits. nlohmann's
// grisu2 gave 17 digits for ~0.3% of float32 offsets, which made about half of 7B exports differ from
// transformers' bytes. This offset is one of them (float32 0.13041666...; Python: 0.1304166615009308).
TEST(BnbSerialization, NestedOffsetIsWrittenAsPythonReprs) {
  qlora::ops::QuantState4bit s;
  s.shape = {4, 64};
  s.nested_absmax = at::ones({1});
  s.offset = at::scalar_tensor(0.13041666150093079f, at::kFloat);
  const std::string json = qlora::ops::quant_state_json(s);
  EXPECT_NE(json.find("\"nested_offset\": 0.1304166615009308}"), std::string::npos) << json;
  qlora::ops::QuantState4bit back = s;
  qlora::ops::apply_quant_state_json(json, back, "test");
  EXPECT_EQ(back.offset.item<float>(), s.offset.item<float>());  // and it reads back to the same float32
}

}  // namespace
