// NF4 dequantization: the CPU reference against values written out by hand from bitsandbytes'
// table (../shared/REFERENCE.md A1), and the CUDA kernel against the CPU reference.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "qlora/core/error.h"
#include "qlora/ops/dequantize.h"
#include "qlora/quant/nf4.h"

namespace {

// bitsandbytes functional.py get_4bit_type("nf4"), copied independently of kernels/nf4_layout.h.
const float kBnbNf4[16] = {-1.0f,
                           -0.6961928009986877f,
                           -0.5250730514526367f,
                           -0.39491748809814453f,
                           -0.28444138169288635f,
                           -0.18477343022823334f,
                           -0.09105003625154495f,
                           0.0f,
                           0.07958029955625534f,
                           0.16093020141124725f,
                           0.24611230194568634f,
                           0.33791524171829224f,
                           0.44070982933044434f,
                           0.5626170039176941f,
                           0.7229568362236023f,
                           1.0f};

TEST(Nf4Dequantize, HighNibbleIsTheFirstElement) {
  // Byte 0x0F: element 0 gets code 0 (-1.0), element 1 gets code 15 (1.0).
  const std::vector<uint8_t> packed = {0x0F, 0x7A};
  const std::vector<float> absmax = {2.0f};
  std::vector<float> out(4, -123.0f);
  qlora::quant::nf4_dequantize_f32_reference(packed.data(), absmax.data(), out.data(), 4, 64);
  EXPECT_EQ(out[0], -2.0f);
  EXPECT_EQ(out[1], 2.0f);
  EXPECT_EQ(out[2], 0.0f);                // code 7
  EXPECT_EQ(out[3], kBnbNf4[10] * 2.0f);  // code 10
}

TEST(Nf4Dequantize, EveryCodeAndPartialLastBlock) {
  // n = 2*32 + 5 with blocksize 32: three blocks, the last one partial (5 elements), odd n.
  const int64_t n = 69, blocksize = 32;
  std::mt19937 rng(7);
  std::vector<uint8_t> codes(n);
  for (int64_t i = 0; i < n; ++i) codes[i] = static_cast<uint8_t>(i < 16 ? i : rng() % 16);
  std::vector<uint8_t> packed((n + 1) / 2, 0);
  for (int64_t i = 0; i < n; ++i) packed[i / 2] |= (i % 2 == 0) ? codes[i] << 4 : codes[i];
  const std::vector<float> absmax = {0.5f, 3.25f, 1e-3f};
  std::vector<float> out(n, -123.0f);
  qlora::quant::nf4_dequantize_f32_reference(packed.data(), absmax.data(), out.data(), n, blocksize);
  for (int64_t i = 0; i < n; ++i) {
    // Exact: one float32 product of the same two floats, as bitsandbytes computes it.
    EXPECT_EQ(out[i], kBnbNf4[codes[i]] * absmax[i / blocksize]) << "element " << i;
  }
}

TEST(Nf4Dequantize, OpsLayerChecksShapes) {
  const auto packed = at::zeros({3}, at::kByte);
  const auto absmax = at::ones({1}, at::kFloat);
  EXPECT_THROW(qlora::ops::nf4_dequantize(packed, absmax, 7, 48), qlora::Error);         // bad blocksize
  EXPECT_THROW(qlora::ops::nf4_dequantize(packed, absmax, 9, 64), qlora::Error);         // needs 5 bytes
  EXPECT_THROW(qlora::ops::nf4_dequantize(packed, at::ones({2}), 6, 64), qlora::Error);  // 1 block
  EXPECT_THROW(qlora::ops::nf4_dequantize(packed.to(at::kFloat), absmax, 6, 64), qlora::Error);
  const auto out = qlora::ops::nf4_dequantize(at::full({3}, 0x7F, at::kByte), absmax, 6, 64);
  ASSERT_EQ(out.numel(), 6);
  EXPECT_EQ(out[0].item<float>(), 0.0f);
  EXPECT_EQ(out[1].item<float>(), 1.0f);
}

TEST(Nf4DequantizeCuda, MatchesCpuReference) {
  if (!qlora::ops::cuda_kernels_built()) GTEST_SKIP() << "built without CUDA kernels";
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device on this machine";
  for (const int64_t n :
       {int64_t{1}, int64_t{5}, int64_t{63}, int64_t{64}, int64_t{4097}, int64_t{1 << 20}}) {
    for (const int64_t blocksize : {int64_t{32}, int64_t{64}, int64_t{256}, int64_t{4096}}) {
      const auto packed = at::randint(0, 256, {(n + 1) / 2}, at::kByte);
      const auto absmax = at::rand({(n + blocksize - 1) / blocksize}, at::kFloat) + 0.01;
      const auto cpu = qlora::ops::nf4_dequantize(packed, absmax, n, blocksize);
      const auto gpu = qlora::ops::nf4_dequantize(packed.cuda(), absmax.cuda(), n, blocksize).cpu();
      // Same single float32 multiply on both sides: results must be bit-identical.
      EXPECT_TRUE(at::equal(cpu, gpu)) << "n=" << n << " blocksize=" << blocksize;
    }
  }
}

}  // namespace
