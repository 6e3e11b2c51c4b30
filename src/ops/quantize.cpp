#include "qlora/ops/quantize.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <numeric>

#include "float_type.h"
#include "qlora/core/error.h"
#include "qlora/quant/nf4.h"

#ifdef QLORA_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/nf4_dequantize.h"
#endif

namespace qlora::ops {

namespace {

void check_blocksize(int64_t blocksize, const std::string& where) {
  if (!nf4::valid_blocksize(blocksize)) {
    fail(where + ": blocksize " + std::to_string(blocksize) +
         " is not one of 32, 64, 128, 256, 512, 1024, 2048, 4096");
  }
}

at::Tensor codebook(QuantType type) {
  at::Tensor code = at::empty({nf4::kCodes}, at::kFloat);
  for (int i = 0; i < nf4::kCodes; ++i) {
    // bnb's quant_map for FP4 is get_4bit_type("fp4"), whose index 8 is +0.0 (Python's -0 is 0).
    code.data_ptr<float>()[i] = type == QuantType::kNf4
                                    ? nf4::kCodebook[i]
                                    : (i == 8 ? 0.0f : nf4::fp4_value(static_cast<uint8_t>(i)));
  }
  return code;
}

// Checks a state's tensors against its shape and blocksize before any raw-pointer access.
void check_state(const QuantState4bit& s, const std::string& where) {
  check_blocksize(s.blocksize, where);
  float_type(s.dtype, where);
  const int64_t n = s.numel();
  if (!s.packed.defined() || s.packed.scalar_type() != at::kByte ||
      s.packed.numel() != nf4::packed_bytes(n)) {
    fail(where + ": packed weight must be uint8 with " + std::to_string(nf4::packed_bytes(n)) +
         " bytes for shape of " + std::to_string(n) + " values");
  }
  const int64_t blocks = nf4::num_blocks(n, s.blocksize);
  if (!s.absmax.defined() || s.absmax.numel() != blocks) {
    fail(where + ": expected " + std::to_string(blocks) + " absmax values");
  }
  if (s.nested()) {
    if (s.absmax.scalar_type() != at::kByte) fail(where + ": a double-quantized absmax must be uint8");
    if (s.nested_blocksize != nf4::kNestedBlocksize) fail(where + ": nested blocksize must be 256");
    if (s.nested_absmax.scalar_type() != at::kFloat ||
        s.nested_absmax.numel() != nf4::num_blocks(blocks, nf4::kNestedBlocksize)) {
      fail(where + ": nested_absmax must be float32 with one value per 256 absmax");
    }
    if (!s.nested_code.defined() || s.nested_code.scalar_type() != at::kFloat ||
        s.nested_code.numel() != nf4::kDynamicCodes) {
      fail(where + ": nested_code must be float32 [256]");
    }
    if (!s.offset.defined() || s.offset.numel() != 1) fail(where + ": nested state needs a scalar offset");
  } else if (s.absmax.scalar_type() != at::kFloat) {
    fail(where + ": absmax must be float32 (or uint8 with a nested state)");
  }
}

}  // namespace

QuantType parse_quant_type(const std::string& name, const std::string& where) {
  if (name == "nf4") return QuantType::kNf4;
  if (name == "fp4") return QuantType::kFp4;
  fail(where + ": quant_type must be 'nf4' or 'fp4', got '" + name + "'");
}

std::string quant_type_name(QuantType type) { return type == QuantType::kNf4 ? "nf4" : "fp4"; }

int64_t QuantState4bit::numel() const {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

QuantState4bit quantize_4bit(const at::Tensor& w, QuantType quant_type, int64_t blocksize,
                             bool double_quant) {
  const std::string where = "quantize_4bit";
  check_blocksize(blocksize, where);
  const quant::FloatType in_type = float_type(w.scalar_type(), where);
  if (w.numel() == 0) fail(where + ": empty tensor");
  const at::Tensor input = w.detach().to(at::kCPU).contiguous();
  const int64_t n = input.numel();
  const int64_t blocks = nf4::num_blocks(n, blocksize);

  QuantState4bit s;
  s.shape = w.sizes().vec();
  s.dtype = w.scalar_type();
  s.blocksize = blocksize;
  s.quant_type = quant_type;
  s.code = codebook(quant_type);
  s.packed = at::empty({nf4::packed_bytes(n), 1}, at::kByte);
  at::Tensor absmax = at::empty({blocks}, at::kFloat);
  quant::quantize_4bit_reference(input.data_ptr(), in_type, n, blocksize, quant_type,
                                 s.packed.data_ptr<uint8_t>(), absmax.data_ptr<float>());
  if (double_quant) {
    // bnb: offset = absmax.mean() with torch's own reduction, so the float32 sum order matches.
    s.offset = absmax.mean();
    s.nested_code =
        at::from_blob(quant::create_dynamic_map().data(), {nf4::kDynamicCodes}, at::kFloat).clone();
    s.absmax = at::empty({blocks}, at::kByte);
    s.nested_absmax = at::empty({nf4::num_blocks(blocks, nf4::kNestedBlocksize)}, at::kFloat);
    quant::double_quant_reference(absmax.data_ptr<float>(), blocks, s.offset.item<float>(),
                                  s.nested_code.data_ptr<float>(), s.absmax.data_ptr<uint8_t>(),
                                  s.nested_absmax.data_ptr<float>());
  } else {
    s.absmax = absmax;
  }
  if (w.is_cuda()) {
    for (at::Tensor* t : {&s.packed, &s.absmax, &s.nested_absmax, &s.nested_code, &s.offset, &s.code}) {
      if (t->defined()) *t = t->to(w.device());
    }
  }
  return s;
}

at::Tensor state_absmax_f32(const QuantState4bit& s) {
  check_state(s, "dequantize_4bit");
  if (!s.nested()) return s.absmax.contiguous();
  const int64_t blocks = s.absmax.numel();
  const float offset = s.offset.item<float>();
  const at::Tensor q = s.absmax.contiguous(), nested = s.nested_absmax.contiguous(),
                   code = s.nested_code.contiguous();
  at::Tensor out = at::empty({blocks}, q.options().dtype(at::kFloat));
  if (q.is_cuda()) {
#ifdef QLORA_WITH_CUDA
    const int err = kernels::dequantize_nested_absmax(q.data_ptr<uint8_t>(), nested.data_ptr<float>(),
                                                      code.data_ptr<float>(), offset, out.data_ptr<float>(),
                                                      blocks, at::cuda::getCurrentCUDAStream().stream());
    if (err != 0) fail("dequantize_4bit: CUDA kernel failed with error " + std::to_string(err));
#else
    fail("dequantize_4bit: this build has no CUDA kernels (configure with QLORA_CUDA=ON)");
#endif
  } else {
    quant::dequantize_nested_absmax_reference(q.data_ptr<uint8_t>(), nested.data_ptr<float>(), offset,
                                              code.data_ptr<float>(), blocks, out.data_ptr<float>());
  }
  return out;
}

at::Tensor dequantize_4bit(const QuantState4bit& s, std::optional<at::ScalarType> out_dtype) {
  const std::string where = "dequantize_4bit";
  check_state(s, where);
  const at::ScalarType dtype = out_dtype.value_or(s.dtype);
  const quant::FloatType out_type = float_type(dtype, where);
  const at::Tensor packed = s.packed.contiguous();
  const int64_t n = s.numel();
  at::Tensor out = at::empty(s.shape, packed.options().dtype(dtype));
  if (packed.is_cuda()) {
#ifdef QLORA_WITH_CUDA
    kernels::AbsmaxSource src;
    at::Tensor q, nested, code;
    if (s.nested()) {  // absmax rebuilt per block inside the kernel
      q = s.absmax.contiguous();
      nested = s.nested_absmax.contiguous();
      code = s.nested_code.contiguous();
      src.qabsmax = q.data_ptr<uint8_t>();
      src.nested_absmax = nested.data_ptr<float>();
      src.nested_code = code.data_ptr<float>();
      src.offset = s.offset.item<float>();
    } else {
      q = s.absmax.contiguous();
      src.absmax = q.data_ptr<float>();
    }
    const int err = kernels::dequantize_4bit(
        packed.data_ptr<uint8_t>(), src, out.data_ptr(), static_cast<int>(out_type), n, s.blocksize,
        static_cast<int>(s.quant_type), at::cuda::getCurrentCUDAStream().stream());
    if (err != 0) fail(where + ": CUDA kernel failed with error " + std::to_string(err));
#else
    fail(where + ": this build has no CUDA kernels (configure with QLORA_CUDA=ON)");
#endif
  } else {
    const at::Tensor absmax = state_absmax_f32(s);
    quant::dequantize_4bit_reference(packed.data_ptr<uint8_t>(), absmax.data_ptr<float>(), n, s.blocksize,
                                     s.quant_type, out.data_ptr(), out_type);
  }
  return out;
}

bool matmul_4bit_uses_gemv(const at::Tensor& x, const QuantState4bit& s) {
#ifdef QLORA_WITH_CUDA
  return x.is_cuda() && x.dim() == 2 && x.size(0) >= 1 && x.size(0) <= kernels::kGemvMaxBatch &&
         (x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16) && !x.requires_grad() &&
         s.shape.size() == 2;
#else
  (void)x;
  (void)s;
  return false;
#endif
}

namespace {

void check_matmul_args(const at::Tensor& x, const QuantState4bit& s, const at::Tensor& bias,
                       const std::string& where) {
  check_state(s, where);
  if (s.shape.size() != 2) fail(where + ": the 4-bit weight must be 2-D [out, in]");
  if (x.dim() < 1 || x.size(-1) != s.shape[1]) {
    fail(where + ": x's last dimension must be in_features = " + std::to_string(s.shape[1]));
  }
  if (x.device() != s.packed.device()) fail(where + ": x and the 4-bit weight are on different devices");
  float_type(x.scalar_type(), where);
  if (bias.defined() && (bias.numel() != s.shape[0] || bias.dim() != 1)) {
    fail(where + ": bias must be [out_features = " + std::to_string(s.shape[0]) + "]");
  }
  if (bias.defined() && bias.device() != x.device()) fail(where + ": bias is on another device than x");
}

constexpr int64_t kTiledWorkspaceBytes = int64_t{32} << 20;

// Tile starts n0 * K must be multiples of blocksize (even, as every blocksize is), so the row count of a
// tile is a multiple of blocksize / gcd(K, blocksize).
int64_t tile_row_unit(int64_t K, int64_t blocksize) { return blocksize / std::gcd(K, blocksize); }

int64_t resolve_tile_rows(int64_t tile_rows, const QuantState4bit& s, at::ScalarType dtype,
                          const std::string& where) {
  const int64_t N = s.shape[0], K = s.shape[1];
  const int64_t unit = tile_row_unit(K, s.blocksize);
  if (tile_rows < 0) fail(where + ": tile_rows must be >= 0, got " + std::to_string(tile_rows));
  if (tile_rows == 0) {
    // Also a multiple of 64 rows: the y[:, n0:n1] slices then start 16-byte aligned and cover whole GEMM
    // tiles, which cuBLAS's fastest kernels want. unit is a power of two, so this is still a multiple.
    const int64_t step = std::max<int64_t>(unit, 64);
    const int64_t fit = kTiledWorkspaceBytes / (K * static_cast<int64_t>(c10::elementSize(dtype)));
    tile_rows = std::max(step, fit / step * step);
  } else if (tile_rows < N && tile_rows % unit != 0) {
    fail(where + ": tile_rows " + std::to_string(tile_rows) + " must be a multiple of " +
         std::to_string(unit) + " so that every tile starts on a quantization block boundary (K = " +
         std::to_string(K) + ", blocksize " + std::to_string(s.blocksize) + ")");
  }
  return std::max<int64_t>(1, std::min(tile_rows, N));
}

// Columns per input-gradient window: the forward's workspace size spread over all N rows.
int64_t window_cols(int64_t tile_rows, int64_t N, int64_t K) {
  int64_t cols = std::clamp<int64_t>(tile_rows * K / N, 1, K);
  // 16-byte aligned dx column slices (and whole GEMM tiles when wide) for cuBLAS.
  if (cols < K) cols = cols >= 128 ? cols / 64 * 64 : cols >= 8 ? cols / 8 * 8 : cols;
  return cols;
}

// What the tiles are cut from, prepared once per forward / backward call.
struct TileSource {
  at::Tensor packed;  // uint8, contiguous
  at::Tensor absmax;  // float32 per block, contiguous
};

TileSource tile_source(const QuantState4bit& s) {
  TileSource src;
  src.packed = s.packed.contiguous();
  if (!s.nested()) {
    src.absmax = s.absmax.contiguous();
    return src;
  }
  // code[q] * nested[b / 256] + offset as two separate float32 ATen ops: bnb's two roundings, the same
  // bits as state_absmax_f32 and the kernels' block_absmax, but without offset.item()'s host sync on
  // CUDA. The same code on the CPU, where the tests pin it against the reference.
  const int64_t blocks = s.absmax.numel();
  const at::Tensor code = s.nested_code.index_select(0, s.absmax.reshape(-1).to(at::kLong));
  const at::Tensor nested = s.nested_absmax.reshape({-1, 1});  // expand, not repeat_interleave (no sync)
  const at::Tensor scale =
      nested.expand({nested.size(0), nf4::kNestedBlocksize}).reshape(-1).narrow(0, 0, blocks);
  src.absmax = (code * scale).add_(s.offset.reshape({}).to(scale.device()));
  return src;
}

float code_value(QuantType type, uint8_t code) {
  return type == QuantType::kNf4 ? nf4::kCodebook[code] : nf4::fp4_value(code);
}

// out (contiguous [r1 - r0, c1 - c0], its dtype) = W[r0:r1, c0:c1], dequantized as dequantize_4bit does.
void dequantize_tile(const QuantState4bit& s, const TileSource& src, int64_t r0, int64_t r1, int64_t c0,
                     int64_t c1, at::Tensor& out) {
  const int64_t K = s.shape[1];
  const quant::FloatType out_type = float_type(out.scalar_type(), "matmul_4bit_tiled");
  if (out.is_cuda()) {
#ifdef QLORA_WITH_CUDA
    const c10::cuda::CUDAGuard device(out.device());  // raw launches go to the current device's stream
    kernels::AbsmaxSource absmax;
    absmax.absmax = src.absmax.data_ptr<float>();
    const int err = kernels::dequantize_4bit_window(
        src.packed.data_ptr<uint8_t>(), absmax, out.data_ptr(), static_cast<int>(out_type),
        kernels::Window4bit{K, r0, r1, c0, c1}, s.blocksize, static_cast<int>(s.quant_type),
        at::cuda::getCurrentCUDAStream().stream());
    if (err != 0) fail("matmul_4bit_tiled: CUDA kernel failed with error " + std::to_string(err));
    return;
#else
    fail("matmul_4bit_tiled: this build has no CUDA kernels (configure with QLORA_CUDA=ON)");
#endif
  }
  const uint8_t* packed = src.packed.data_ptr<uint8_t>();
  const float* absmax = src.absmax.data_ptr<float>();
  if (c0 == 0 && c1 == K) {
    // A row tile starts on a block boundary (resolve_tile_rows), so the reference runs on offset pointers.
    const int64_t begin = r0 * K;
    quant::dequantize_4bit_reference(packed + begin / 2, absmax + begin / s.blocksize, (r1 - r0) * K,
                                     s.blocksize, s.quant_type, out.data_ptr(), out_type);
    return;
  }
  const int64_t width = c1 - c0;
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t i = r * K + c;
      quant::store_float(out.data_ptr(), out_type, (r - r0) * width + (c - c0),
                         code_value(s.quant_type, nf4::code_at(packed, i)) * absmax[i / s.blocksize]);
    }
  }
}

// y [..., N] = x [..., K] @ W^T (+ bias), one row tile of W at a time into y[:, n0:n1]. y is allocated in
// its final shape (not returned as a view) so callers may modify it in place.
at::Tensor tiled_forward(const at::Tensor& x, const QuantState4bit& s, const at::Tensor& bias,
                         int64_t tile_rows) {
  const int64_t N = s.shape[0], K = s.shape[1];
  const TileSource src = tile_source(s);
  const at::Tensor x2 = x.reshape({-1, K});
  std::vector<int64_t> y_sizes = x.sizes().vec();
  y_sizes.back() = N;
  at::Tensor y_full = at::empty(y_sizes, x.options());
  at::Tensor y = y_full.view({-1, N});
  at::Tensor workspace = at::empty({tile_rows, K}, x2.options());
  for (int64_t n0 = 0; n0 < N; n0 += tile_rows) {
    const int64_t rows = std::min(tile_rows, N - n0);
    at::Tensor tile = workspace.narrow(0, 0, rows);
    dequantize_tile(s, src, n0, n0 + rows, 0, K, tile);
    at::Tensor out = y.narrow(1, n0, rows);
    if (bias.defined()) {
      at::addmm_out(out, bias.narrow(0, n0, rows), x2, tile.t());
    } else {
      at::mm_out(out, x2, tile.t());
    }
  }
  return y_full;
}

// dx [x_sizes] = dy2 [M, N] @ W, one column window W[:, k0:k1] at a time into dx[:, k0:k1].
at::Tensor tiled_input_grad(const at::Tensor& dy2, const QuantState4bit& s, int64_t tile_rows,
                            at::IntArrayRef x_sizes) {
  const int64_t N = s.shape[0], K = s.shape[1];
  const int64_t cols = window_cols(tile_rows, N, K);
  const TileSource src = tile_source(s);
  at::Tensor dx_full = at::empty(x_sizes, dy2.options());
  at::Tensor dx = dx_full.view({-1, K});
  at::Tensor workspace = at::empty({N * cols}, dy2.options());
  for (int64_t k0 = 0; k0 < K; k0 += cols) {
    const int64_t width = std::min(cols, K - k0);
    at::Tensor window = workspace.narrow(0, 0, N * width).view({N, width});
    dequantize_tile(s, src, 0, N, k0, k0 + width, window);
    at::Tensor out = dx.narrow(1, k0, width);
    at::mm_out(out, dy2, window);
  }
  return dx_full;
}

// What backward needs: the state (its tensors are shared, not copied) and the shapes; nothing of x.
struct TiledMatmulSaved : torch::CustomClassHolder {
  QuantState4bit state;
  int64_t tile_rows = 0;
  std::vector<int64_t> x_sizes;
};

class Matmul4bitTiled : public torch::autograd::Function<Matmul4bitTiled> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const std::optional<at::Tensor>& bias,
                            c10::intrusive_ptr<TiledMatmulSaved> saved) {
    ctx->saved_data["saved"] = at::IValue::make_capsule(saved);
    ctx->saved_data["has_bias"] = bias.has_value();
    return tiled_forward(x, saved->state, bias.value_or(at::Tensor()), saved->tile_rows);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto holder = ctx->saved_data["saved"].toCapsule();
    const auto* saved = static_cast<const TiledMatmulSaved*>(holder.get());
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    const int64_t N = saved->state.shape[0];
    const at::Tensor dy2 = grad_outputs.at(0).reshape({-1, N}).contiguous();
    at::Tensor dx, dbias;
    // Edges exist for the tensors given: x (0) and, when present, bias (1).
    if (ctx->needs_input_grad(0)) {
      dx = tiled_input_grad(dy2, saved->state, saved->tile_rows, saved->x_sizes);
    }
    if (has_bias && ctx->needs_input_grad(1)) dbias = dy2.sum(0);
    return {dx, dbias, at::Tensor()};
  }
};

}  // namespace

int64_t matmul_4bit_tile_rows(const at::Tensor& x, const QuantState4bit& s, int64_t tile_rows) {
  const std::string where = "matmul_4bit_tiled";
  check_matmul_args(x, s, {}, where);
  return resolve_tile_rows(tile_rows, s, x.scalar_type(), where);
}

at::Tensor matmul_4bit_tiled(const at::Tensor& x, const QuantState4bit& s, const at::Tensor& bias,
                             int64_t tile_rows) {
  const std::string where = "matmul_4bit_tiled";
  check_matmul_args(x, s, bias, where);
  auto saved = c10::make_intrusive<TiledMatmulSaved>();
  saved->state = s;
  saved->tile_rows = resolve_tile_rows(tile_rows, s, x.scalar_type(), where);
  saved->x_sizes = x.sizes().vec();
  // at::linear would refuse a bias of another dtype; casting here keeps its gradient flowing back.
  std::optional<at::Tensor> b;
  if (bias.defined()) b = bias.to(x.scalar_type());
  return Matmul4bitTiled::apply(x, b, saved);
}

at::Tensor matmul_4bit(const at::Tensor& x, const QuantState4bit& s, const at::Tensor& bias) {
  const std::string where = "matmul_4bit";
  check_matmul_args(x, s, bias, where);
#ifdef QLORA_WITH_CUDA
  if (matmul_4bit_uses_gemv(x, s) && (!bias.defined() || !bias.requires_grad())) {
    const at::Tensor xc = x.contiguous();
    const at::Tensor absmax = state_absmax_f32(s);
    at::Tensor y = at::empty({x.size(0), s.shape[0]}, xc.options());
    const int err = kernels::gemv_4bit(
        xc.data_ptr(), x.scalar_type() == at::kHalf ? 1 : 2, s.packed.contiguous().data_ptr<uint8_t>(),
        absmax.data_ptr<float>(), y.data_ptr(), x.size(0), s.shape[0], s.shape[1], s.blocksize,
        static_cast<int>(s.quant_type), at::cuda::getCurrentCUDAStream().stream());
    if (err != 0) fail(where + ": CUDA kernel failed with error " + std::to_string(err));
    return bias.defined() ? y + bias.to(y.scalar_type()) : y;
  }
  if (x.is_cuda()) return matmul_4bit_tiled(x, s, bias);
#endif
  // bnb's gemm_4bit: dequantize to x's dtype, then linear. The detached weight gives autograd dx only.
  const at::Tensor w = dequantize_4bit(s, x.scalar_type()).detach();
  return at::linear(x, w, bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt);
}

}  // namespace qlora::ops
