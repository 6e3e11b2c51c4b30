#include "qlora/ops/quantize.h"

#include <ATen/ATen.h>

#include "qlora/core/error.h"
#include "qlora/quant/nf4.h"

#ifdef QLORA_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>

#include "kernels/nf4_dequantize.h"
#endif

namespace qlora::ops {

namespace {

quant::FloatType float_type(at::ScalarType t, const std::string& where) {
  switch (t) {
    case at::kFloat:
      return quant::FloatType::kF32;
    case at::kHalf:
      return quant::FloatType::kF16;
    case at::kBFloat16:
      return quant::FloatType::kBF16;
    default:
      fail(where + ": dtype " + std::string(c10::toString(t)) + " is not float32, float16 or bfloat16");
  }
}

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

at::Tensor matmul_4bit(const at::Tensor& x, const QuantState4bit& s, const at::Tensor& bias) {
  const std::string where = "matmul_4bit";
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
#endif
  // bnb's gemm_4bit: dequantize to x's dtype, then linear. The detached weight gives autograd dx only.
  const at::Tensor w = dequantize_4bit(s, x.scalar_type()).detach();
  return at::linear(x, w, bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt);
}

}  // namespace qlora::ops
