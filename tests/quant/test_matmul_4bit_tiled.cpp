// matmul_4bit_tiled (the training matmul over dequantized tiles of a 4-bit weight) against
// dequantize_4bit + plain torch math: forward, dx and dbias; NF4/FP4, plain and double-quantized
// states, blocksizes 64/128/4096, tiles that leave a partial last tile, non-contiguous inputs. The CUDA
// path (window kernel + cuBLAS) is compared with the CPU path and skips without a device.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "bnb_fixtures.h"
#include "error_of.h"
#include "qlora/ops/quantize.h"

namespace {

using qlora::ops::QuantState4bit;
using qlora::ops::QuantType;

constexpr double kU32 = 1.0 / (1 << 24);  // float32 unit roundoff

// Unit roundoff of a dtype: half the distance from 1 to the next value.
double unit_roundoff(at::ScalarType t) {
  return t == at::kBFloat16 ? 1.0 / (1 << 8) : t == at::kHalf ? 1.0 / (1 << 11) : kU32;
}

// |got - want| <= bound elementwise, reporting the worst offender.
::testing::AssertionResult within(const at::Tensor& got, const at::Tensor& want, const at::Tensor& bound) {
  const at::Tensor g = got.detach().to(at::kCPU, at::kDouble), w = want.detach().to(at::kCPU, at::kDouble);
  if (g.sizes() != w.sizes())
    return ::testing::AssertionFailure() << "shape " << g.sizes() << " vs " << w.sizes();
  const at::Tensor excess = (g - w).abs() - bound.to(at::kCPU, at::kDouble);
  const int64_t worst = excess.reshape(-1).argmax().item<int64_t>();
  if (excess.reshape(-1)[worst].item<double>() > 0 || !g.isfinite().all().item<bool>()) {
    return ::testing::AssertionFailure()
           << "element " << worst << ": got " << g.reshape(-1)[worst].item<double>() << ", want "
           << w.reshape(-1)[worst].item<double>() << ", bound " << bound.reshape(-1)[worst].item<double>();
  }
  return ::testing::AssertionSuccess();
}

struct Case {
  QuantType type;
  int64_t blocksize;
  bool double_quant;
  int64_t N, K;
  std::vector<int64_t> tiles;  // tile_rows to try; each must be a multiple of blocksize / gcd(K, blocksize)
};

std::string name(const Case& c) {
  return qlora::ops::quant_type_name(c.type) + " bs" + std::to_string(c.blocksize) +
         (c.double_quant ? " dq" : "") + " " + std::to_string(c.N) + "x" + std::to_string(c.K);
}

// Shapes chosen so tiles end mid-weight: 301x65 with blocksize 64 (tile unit 64 rows, odd numel, last
// tile 45 rows, 306 blocks so the nested absmax index b / 256 reaches 1), 11x96 with 128 (unit 4, last tile
// 3), 13x1024 with 4096 (unit 4, last tile 1), 7x65 (one tile, N < unit). 0 = automatic.
std::vector<Case> cases() {
  std::vector<Case> out;
  for (const QuantType type : {QuantType::kNf4, QuantType::kFp4}) {
    for (const bool dq : {false, true}) {
      out.push_back({type, 64, dq, 301, 65, {0, 64, 128, 192}});
      out.push_back({type, 128, dq, 11, 96, {4, 8}});
      out.push_back({type, 4096, dq, 13, 1024, {4, 12}});
      out.push_back({type, 64, dq, 7, 65, {0, 64}});
    }
  }
  return out;
}

QuantState4bit make_state(const Case& c, uint64_t seed) {
  at::manual_seed(seed);
  return qlora::ops::quantize_4bit(at::randn({c.N, c.K}) * 0.5, c.type, c.blocksize, c.double_quant);
}

TEST(MatmulTiled, IdentityInputReproducesTheWeightExactly) {
  // x = I: each output is one product w * 1 plus exact zeros, so y = W^T and dx = W bit for bit whatever
  // the summation order; this pins the tile and window dequantization (offsets, partial tiles, nibble
  // order, nested absmax index) exactly. Value equality (-0 + 0 = +0 may flip a zero's sign).
  for (const Case& c : cases()) {
    const QuantState4bit s = make_state(c, 1);
    for (const auto dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
      const at::Tensor w = qlora::ops::dequantize_4bit(s, dtype);
      for (const int64_t tile : c.tiles) {
        SCOPED_TRACE(name(c) + " " + std::string(c10::toString(dtype)) + " tile " + std::to_string(tile));
        const at::Tensor x = at::eye(c.K, at::TensorOptions().dtype(dtype)).requires_grad_(true);
        const at::Tensor y = qlora::ops::matmul_4bit_tiled(x, s, {}, tile);
        EXPECT_TRUE(at::equal(y.detach(), w.t()));
        // dy one-hot per row: dx[k, :] = sum_n dy[k, n] W[n, :] = W[k % N, :], again one product.
        const at::Tensor pick = at::arange(c.K) % c.N;
        y.backward(at::one_hot(pick, c.N).to(dtype));
        const at::Tensor want = w.index_select(0, pick);
        EXPECT_TRUE(at::equal(x.grad(), want));
      }
    }
  }
}

TEST(MatmulTiled, Fp32ForwardAndGradsMatchDequantizeThenLinear) {
  for (const Case& c : cases()) {
    const QuantState4bit s = make_state(c, 2);
    const at::Tensor w = qlora::ops::dequantize_4bit(s, at::kFloat);
    // A non-contiguous 3-D x: [3, 5, K] as a permuted view.
    const at::Tensor x_data = at::randn({c.K, 5, 3}).permute({2, 1, 0});
    const at::Tensor bias_data = at::randn({c.N});
    const at::Tensor dy = at::randn({3, 5, c.N});
    // Reference: at::linear on the dense dequantized weight, through autograd.
    const at::Tensor xr = x_data.clone().requires_grad_(true), br = bias_data.clone().requires_grad_(true);
    at::linear(xr, w, br).backward(dy);
    const at::Tensor yr = at::linear(x_data, w, bias_data);
    // Both sides evaluate the same length-K dot products in float32 but MKL may block them differently:
    // each is within gamma_K = K u |x| |W| of the exact value, so they differ by at most 2 K u (|x||W| +
    // |b|). dx sums over N and dbias over the 15 rows, likewise.
    const at::Tensor y_bound =
        2 * (c.K + 1) * kU32 * (at::matmul(x_data.abs(), w.abs().t()) + bias_data.abs());
    const at::Tensor dx_bound = 2 * c.N * kU32 * at::matmul(dy.abs(), w.abs());
    const at::Tensor db_bound = 2 * 15 * kU32 * dy.abs().sum(at::IntArrayRef{0, 1});
    for (const int64_t tile : c.tiles) {
      SCOPED_TRACE(name(c) + " tile " + std::to_string(tile));
      const at::Tensor x = x_data.clone().requires_grad_(true), b = bias_data.clone().requires_grad_(true);
      const at::Tensor y = qlora::ops::matmul_4bit_tiled(x, s, b, tile);
      EXPECT_EQ(y.sizes(), yr.sizes());
      EXPECT_TRUE(within(y, yr, y_bound));
      y.backward(dy);
      EXPECT_EQ(x.grad().sizes(), x.sizes());
      EXPECT_TRUE(within(x.grad(), xr.grad(), dx_bound));
      EXPECT_TRUE(within(b.grad(), br.grad(), db_bound));
    }
  }
}

TEST(MatmulTiled, HalfTypesMatchFloat32MathWithinOneRounding) {
  for (const Case& c : cases()) {
    const QuantState4bit s = make_state(c, 3);
    for (const auto dtype : {at::kHalf, at::kBFloat16}) {
      // The tiles hold W rounded to dtype, exactly as dequantize_4bit(s, dtype); the reference multiplies
      // those values in float32 (and float64 for the bound).
      const at::Tensor w = qlora::ops::dequantize_4bit(s, dtype).to(at::kFloat);
      const at::Tensor x_data = at::randn({c.K, 9}).t().to(dtype);  // [9, K], transposed view
      const at::Tensor bias_data = at::randn({c.N}).to(dtype);
      const at::Tensor dy = at::randn({9, c.N}).to(dtype);
      const at::Tensor xf = x_data.to(at::kFloat), bf = bias_data.to(at::kFloat), dyf = dy.to(at::kFloat);
      const double u = unit_roundoff(dtype);
      // float32 accumulation (K u32 |x||W|) then at most two roundings to dtype (x W^T, then + bias),
      // each <= u (|x||W| + |b|); 1e-7 covers float16's subnormal spacing (2^-24) near zero.
      const at::Tensor xw = at::matmul(xf.abs(), w.abs().t()) + bf.abs();
      const at::Tensor y_bound = (2 * u + 2 * (c.K + 1) * kU32) * xw + 1e-7;
      const at::Tensor dyw = at::matmul(dyf.abs(), w.abs());
      const at::Tensor dx_bound = (u + 2 * c.N * kU32) * dyw + 1e-7;
      const at::Tensor db_bound = (u + 2 * 9 * kU32) * dyf.abs().sum(0) + 1e-7;
      for (const int64_t tile : c.tiles) {
        SCOPED_TRACE(name(c) + " " + std::string(c10::toString(dtype)) + " tile " + std::to_string(tile));
        const at::Tensor x = x_data.clone().requires_grad_(true), b = bias_data.clone().requires_grad_(true);
        const at::Tensor y = qlora::ops::matmul_4bit_tiled(x, s, b, tile);
        EXPECT_EQ(y.scalar_type(), dtype);
        EXPECT_TRUE(within(y, at::linear(xf, w, bf), y_bound));
        y.backward(dy);
        EXPECT_EQ(x.grad().scalar_type(), dtype);
        EXPECT_TRUE(within(x.grad(), at::matmul(dyf, w), dx_bound));
        EXPECT_TRUE(within(b.grad(), dyf.sum(0), db_bound));
      }
    }
  }
}

TEST(MatmulTiled, GradientReachesOnlyWhatRequiresIt) {
  const Case c{QuantType::kNf4, 64, true, 201, 65, {64}};
  const QuantState4bit s = make_state(c, 4);
  const at::Tensor x = at::randn({4, 65});
  const at::Tensor b = at::randn({201}).requires_grad_(true);
  const at::Tensor y = qlora::ops::matmul_4bit_tiled(x, s, b, 64);
  ASSERT_TRUE(y.requires_grad());
  y.sum().backward();
  EXPECT_FALSE(x.grad().defined());
  EXPECT_TRUE(at::allclose(b.grad(), at::full({201}, 4.0f), 0, 0));
  // Without bias and without grad: a plain tensor.
  EXPECT_FALSE(qlora::ops::matmul_4bit_tiled(x, s, {}, 64).requires_grad());
  // A bias of another dtype is cast to x's (at::linear would refuse it), its gradient flows back.
  const at::Tensor bh = at::randn({201}, at::kDouble).requires_grad_(true);
  qlora::ops::matmul_4bit_tiled(x, s, bh, 64).sum().backward();
  EXPECT_EQ(bh.grad().scalar_type(), at::kDouble);
}

TEST(MatmulTiled, AutomaticTileIsAlignedAndFitsThe32MiBWorkspace) {
  // A state with a real shape but zero bytes: tile_rows only needs the shape and blocksize.
  QuantState4bit s = qlora::ops::quantize_4bit(at::zeros({2, 64}), QuantType::kNf4, 64, false);
  for (const auto& [N, K, bs] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {11008, 4096, 64}, {4096, 11008, 64}, {9000, 3000, 64}, {5000, 4097, 4096}, {100, 65, 64}}) {
    s.shape = {N, K};
    s.blocksize = bs;
    s.packed = at::zeros({(N * K + 1) / 2, 1}, at::kByte);
    s.absmax = at::ones({(N * K + bs - 1) / bs});
    for (const auto dtype : {at::kFloat, at::kBFloat16}) {
      SCOPED_TRACE(std::to_string(N) + "x" + std::to_string(K) + " bs" + std::to_string(bs));
      const int64_t tile = qlora::ops::matmul_4bit_tile_rows(at::empty({1, K}, dtype), s);
      // Block-aligned tile starts, and 64-row steps for aligned cuBLAS output slices.
      const int64_t step = std::max<int64_t>(bs / std::gcd(K, bs), 64);
      EXPECT_TRUE(tile == N || tile % step == 0) << tile;
      EXPECT_GE(tile, 1);
      EXPECT_LE(tile, N);
      // Within 32 MiB unless a single step is larger than that.
      EXPECT_TRUE(tile * K * c10::elementSize(dtype) <= (32u << 20) || tile == step) << tile;
      // And not needlessly small: one more step would not fit (or the tile is all of N).
      EXPECT_TRUE(tile == N || (tile + step) * K * c10::elementSize(dtype) > (32u << 20)) << tile;
    }
  }
  EXPECT_EQ(qlora::ops::matmul_4bit_tile_rows(at::empty({1, 65}), s, 1000), 100);  // >= N: one tile
}

TEST(MatmulTiled, RejectsMisalignedTilesAndBadInput) {
  const Case c{QuantType::kNf4, 64, false, 201, 65, {}};
  const QuantState4bit s = make_state(c, 5);
  const at::Tensor x = at::randn({2, 65});
  EXPECT_NE(qlora_test::error_of([&] { qlora::ops::matmul_4bit_tiled(x, s, {}, 10); }).find("multiple of 64"),
            std::string::npos);
  EXPECT_NE(qlora_test::error_of([&] { qlora::ops::matmul_4bit_tiled(x, s, {}, -1); }).find("tile_rows"),
            std::string::npos);
  EXPECT_NE(qlora_test::error_of([&] {
              qlora::ops::matmul_4bit_tiled(at::randn({2, 64}), s);
            }).find("in_features"),
            std::string::npos);
  EXPECT_NE(qlora_test::error_of([&] { qlora::ops::matmul_4bit_tiled(x, s, at::randn({7})); }).find("bias"),
            std::string::npos);
}

TEST(MatmulTiledCuda, MatchesCpuPathAndIsUsedByMatmul4bit) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device on this machine (kernels compiled but not run)";
  for (const Case& c : cases()) {
    const QuantState4bit s = make_state(c, 6);
    QuantState4bit g = s;
    for (at::Tensor* t : {&g.packed, &g.absmax, &g.nested_absmax, &g.nested_code, &g.offset, &g.code}) {
      if (t->defined()) *t = t->cuda();
    }
    for (const auto dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
      const at::Tensor w = qlora::ops::dequantize_4bit(s, dtype);
      for (const int64_t tile : c.tiles) {
        SCOPED_TRACE(name(c) + " " + std::string(c10::toString(dtype)) + " tile " + std::to_string(tile));
        // Exact oracle as on the CPU: identity input reproduces the dequantized weight.
        const at::Tensor eye = at::eye(c.K, at::TensorOptions().dtype(dtype).device(at::kCUDA));
        EXPECT_TRUE(at::equal(qlora::ops::matmul_4bit_tiled(eye, g, {}, tile).cpu(), w.t()));
        const at::Tensor x = at::randn({17, c.K}).to(dtype);
        const at::Tensor bias = at::randn({c.N}).to(dtype);
        const at::Tensor dy = at::randn({17, c.N}).to(dtype);
        const at::Tensor xg = x.cuda().requires_grad_(true), bg = bias.cuda().requires_grad_(true);
        const at::Tensor y = qlora::ops::matmul_4bit_tiled(xg, g, bg, tile);
        y.backward(dy.cuda());
        const at::Tensor wf = w.to(at::kFloat), xf = x.to(at::kFloat), dyf = dy.to(at::kFloat);
        // cuBLAS may split K and, for half types, reduce partial sums in the half type (torch's default
        // allow_*_reduced_precision_reduction): allow 4 roundings to dtype plus float32 accumulation.
        const double u = unit_roundoff(dtype);
        const at::Tensor y_bound = (4 * u + 2 * (c.K + 1) * kU32) *
                                       (at::matmul(xf.abs(), wf.abs().t()) + bias.to(at::kFloat).abs()) +
                                   1e-7;
        const at::Tensor dx_bound = (4 * u + 2 * c.N * kU32) * at::matmul(dyf.abs(), wf.abs()) + 1e-7;
        EXPECT_TRUE(within(y, at::linear(xf, wf, bias.to(at::kFloat)), y_bound));
        EXPECT_TRUE(within(xg.grad(), at::matmul(dyf, wf), dx_bound));
        EXPECT_TRUE(within(bg.grad(), dyf.sum(0), (2 * u + 40 * kU32) * dyf.abs().sum(0) + 1e-7));
      }
      // matmul_4bit on CUDA with more than kGemvMaxBatch rows is the tiled path (same bits).
      const at::Tensor x = at::randn({3, 4, c.K}).to(dtype).cuda();
      EXPECT_FALSE(qlora::ops::matmul_4bit_uses_gemv(x, g));
      EXPECT_TRUE(qlora_test::bytes_equal(qlora::ops::matmul_4bit(x, g).cpu(),
                                          qlora::ops::matmul_4bit_tiled(x, g).cpu()));
    }
  }
}

}  // namespace
