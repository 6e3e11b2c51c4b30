// NF4/FP4 quantize + double quant + dequantize against bitsandbytes 0.50.2 (tools/gen_bnb_fixtures.py;
// CUDA semantics where bnb's CPU backend differs, see there). Every comparison is bitwise.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "bnb_fixtures.h"
#include "error_of.h"
#include "qlora/ops/quantize.h"
#include "qlora/quant/nf4.h"

namespace {

using qlora::ops::QuantType;
using qlora_test::bytes_equal;

const qlora_test::BnbFixture& fourbit() {
  static const auto f = qlora_test::read_bnb_fixture(qlora_test::quant_fixture("fourbit.safetensors"));
  return f;
}

TEST(BnbFourbit, EveryCaseBitIdentical) {
  const auto& f = fourbit();
  const auto cases = qlora::Json::parse(f.metadata.at("cases").get<std::string>());
  ASSERT_GE(cases.size(), 36u);
  for (const auto& c : cases) {
    const std::string name = c.at("name");
    SCOPED_TRACE(name);
    const QuantType qt = qlora::ops::parse_quant_type(c.at("quant_type"), "test");
    const int64_t bs = c.at("blocksize");
    const at::Tensor w = f.at(name + ".input");
    const auto plain = qlora::ops::quantize_4bit(w, qt, bs, false);
    EXPECT_TRUE(bytes_equal(plain.packed, f.at(name + ".packed")));
    EXPECT_TRUE(bytes_equal(plain.absmax, f.at(name + ".absmax")));
    const auto dq = qlora::ops::quantize_4bit(w, qt, bs, true);
    EXPECT_TRUE(bytes_equal(dq.packed, f.at(name + ".packed")));
    EXPECT_TRUE(bytes_equal(dq.offset.reshape({1}), f.at(name + ".offset")));
    EXPECT_TRUE(bytes_equal(dq.absmax, f.at(name + ".qabsmax")));
    EXPECT_TRUE(bytes_equal(dq.nested_absmax, f.at(name + ".nested_absmax")));
    for (const auto& [suffix, dtype] :
         {std::pair{"f32", at::kFloat}, {"f16", at::kHalf}, {"bf16", at::kBFloat16}}) {
      SCOPED_TRACE(suffix);
      EXPECT_TRUE(
          bytes_equal(qlora::ops::dequantize_4bit(plain, dtype).reshape(-1), f.at(name + ".deq_" + suffix)));
      EXPECT_TRUE(
          bytes_equal(qlora::ops::dequantize_4bit(dq, dtype).reshape(-1), f.at(name + ".deqdq_" + suffix)));
    }
    EXPECT_EQ(qlora::ops::dequantize_4bit(dq).scalar_type(), w.scalar_type());
    EXPECT_EQ(qlora::ops::dequantize_4bit(dq).sizes(), w.sizes());
  }
}

TEST(BnbFourbit, DynamicMapMatchesBnb) {
  // bnb's create_dynamic_map() as saved in a Linear4bit state dict (nested_quant_map).
  const auto f = qlora_test::read_bnb_fixture(qlora_test::quant_fixture("linear4bit_nf4_dq.safetensors"));
  const auto map = qlora::quant::create_dynamic_map();
  const at::Tensor got = at::from_blob(const_cast<float*>(map.data()), {256}, at::kFloat);
  EXPECT_TRUE(bytes_equal(got, f.at("model.layers.0.mlp.down_proj.weight.nested_quant_map")));
}

TEST(BnbFourbit, MatmulMatchesBnbAndGivesInputGradOnly) {
  const auto& f = fourbit();
  qlora::ops::QuantState4bit s =
      qlora::ops::quantize_4bit(at::zeros({13, 70}, at::kBFloat16), QuantType::kNf4, 64, true);
  s.packed = f.at("matmul.packed");
  s.absmax = f.at("matmul.qabsmax");
  s.nested_absmax = f.at("matmul.nested_absmax");
  s.offset = f.at("matmul.offset").reshape({});
  const at::Tensor x = f.at("matmul.x").clone().requires_grad_(true);
  const at::Tensor y = qlora::ops::matmul_4bit(x, s, f.at("matmul.bias"));
  // Same ops as bnb's MatMul4Bit on CPU (dequantize to bf16, linear): identical bits.
  EXPECT_TRUE(bytes_equal(y.detach(), f.at("matmul.y")));
  y.backward(f.at("matmul.grad_y"));
  EXPECT_TRUE(bytes_equal(x.grad(), f.at("matmul.grad_x")));
  const at::Tensor ref =
      at::linear(f.at("matmul.x"), qlora::ops::dequantize_4bit(s, at::kBFloat16), f.at("matmul.bias"));
  EXPECT_TRUE(bytes_equal(y.detach(), ref));
}

TEST(BnbFourbit, BitsPerParameter) {
  // Paper §4: 4 + 32/64 = 4.5 without DQ; 4 + 8/64 + 32/(64*256) = 4.127 with DQ (large weights).
  EXPECT_NEAR(qlora::quant::bits_per_parameter(4096 * 4096, 64, false), 4.5, 1e-9);
  // The 32-bit offset adds 32/4096^2 = 1.9e-6 on top of the paper's figure.
  EXPECT_NEAR(qlora::quant::bits_per_parameter(4096 * 4096, 64, true), 4.0 + 0.125 + 32.0 / (64 * 256), 2e-6);
  EXPECT_NEAR(qlora::quant::bits_per_parameter(4096 * 4096, 64, true), 4.127, 5e-4);
  // 5x7: 18 bytes + one absmax = (144 + 32) / 35 bits; the pad nibble and partial block count.
  EXPECT_DOUBLE_EQ(qlora::quant::bits_per_parameter(35, 64, false), 176.0 / 35.0);
  EXPECT_DOUBLE_EQ(qlora::quant::bits_per_parameter(35, 64, true), (144.0 + 8 + 32 + 32) / 35.0);
}

TEST(BnbFourbit, RejectsBadInput) {
  EXPECT_NE(qlora_test::error_of([] {
              qlora::ops::quantize_4bit(at::ones({4}), QuantType::kNf4, 48);
            }).find("blocksize 48"),
            std::string::npos);
  EXPECT_NE(qlora_test::error_of([] {
              qlora::ops::quantize_4bit(at::ones({4}, at::kDouble), QuantType::kNf4);
            }).find("not float32"),
            std::string::npos);
  auto s = qlora::ops::quantize_4bit(at::ones({5, 7}), QuantType::kFp4);
  s.shape = {5, 9};
  EXPECT_NE(qlora_test::error_of([&] { qlora::ops::dequantize_4bit(s); }).find("packed"), std::string::npos);
  EXPECT_NE(qlora_test::error_of([] { qlora::ops::parse_quant_type("int4", "cfg"); }).find("cfg"),
            std::string::npos);
}

TEST(BnbFourbitCuda, KernelsMatchCpuReference) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device on this machine (kernels compiled but not run)";
  for (const QuantType qt : {QuantType::kNf4, QuantType::kFp4}) {
    for (const int64_t bs : {int64_t{32}, int64_t{64}, int64_t{4096}}) {
      const auto s = qlora::ops::quantize_4bit(at::randn({67, 131}), qt, bs, true);
      auto g = s;
      for (at::Tensor* t : {&g.packed, &g.absmax, &g.nested_absmax, &g.nested_code, &g.offset, &g.code})
        *t = t->cuda();
      for (const auto dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
        // Same float32 products and round-to-nearest-even casts on both sides: bit-identical.
        EXPECT_TRUE(
            bytes_equal(qlora::ops::dequantize_4bit(g, dtype), qlora::ops::dequantize_4bit(s, dtype)));
      }
      for (const int64_t batch : {int64_t{1}, int64_t{3}, int64_t{8}}) {
        const at::Tensor x = at::randn({batch, 131}, at::kHalf);
        ASSERT_TRUE(qlora::ops::matmul_4bit_uses_gemv(x.cuda(), g));
        const at::Tensor want = at::linear(x.to(at::kFloat), qlora::ops::dequantize_4bit(s, at::kFloat));
        const at::Tensor got = qlora::ops::matmul_4bit(x.cuda(), g).cpu().to(at::kFloat);
        // fp32 accumulation in a different order, then one fp16 rounding of |y| < ~30: 2 fp16 ulps.
        EXPECT_TRUE(at::allclose(got, want, 1e-2, 2e-2)) << (got - want).abs().max().item<float>();
      }
    }
  }
}

}  // namespace
