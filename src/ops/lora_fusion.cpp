#include "qlora/ops/lora_fusion.h"

#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>

#include <cmath>
#include <initializer_list>
#include <string>

#include "float_type.h"
#include "qlora/core/error.h"
#include "qlora/quant/half.h"

#ifdef QLORA_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/lora_fusion.h"
#endif

// The CPU loops below rely on the host compiler not contracting a * b + c into an FMA where the kernels
// round twice: the x86-64 baseline this project builds for has no FMA instruction, and every intended
// fused step is an explicit std::fma.

namespace qlora::ops {

namespace {

quant::FloatType float_type(const at::Tensor& t, const std::string& where, const char* name) {
  return ops::float_type(t.scalar_type(), where + ": " + name);
}

void check_matrix(const at::Tensor& t, const std::string& where, const char* name) {
  if (!t.defined()) fail(where + ": " + name + " is undefined");
  if (t.dim() != 2) fail(where + ": " + name + " must be 2-D, got " + std::to_string(t.dim()) + "-D");
  float_type(t, where, name);
}

void check_same_device(const at::Tensor& a, const at::Tensor& b, const std::string& where) {
  if (a.device() != b.device()) fail(where + ": tensors are on different devices");
}

// Raw-pointer writes are invisible to autograd: refuse to run where autograd would need them.
void check_no_grad(std::initializer_list<const at::Tensor*> tensors, const std::string& where) {
  if (!at::GradMode::is_enabled()) return;
  for (const at::Tensor* t : tensors) {
    if (t->defined() && t->requires_grad()) {
      fail(where + ": records no autograd; call it under no-grad or with inputs that do not require grad");
    }
  }
}

// Output written in place: no stride-0 / overlapping layout, no sharing memory with an input.
void check_writable(const at::Tensor& out, std::initializer_list<const at::Tensor*> inputs,
                    const std::string& where) {
  if (at::has_internal_overlap(out) == at::MemOverlap::Yes) {
    fail(where + ": the output has overlapping elements (an expanded view)");
  }
  for (const at::Tensor* t : inputs) {
    if (out.is_alias_of(*t)) fail(where + ": the output shares memory with an input");
  }
}

float round_through(quant::FloatType type, float v) {
  switch (type) {
    case quant::FloatType::kF16:
      return quant::f16_to_float(quant::float_to_f16(v));
    case quant::FloatType::kBF16:
      return quant::bf16_to_float(quant::float_to_bf16(v));
    default:
      return v;
  }
}

// acc[i, j] = sum_r p[i, r] * q[r, j] as one in-order std::fma chain (the kernels' order), p [I, R] and
// q [R, J] float32 contiguous.
float lowrank_acc(const float* p, const float* q, int64_t i, int64_t j, int64_t R, int64_t J) {
  float acc = 0.0f;
  for (int64_t r = 0; r < R; ++r) acc = std::fma(p[i * R + r], q[r * J + j], acc);
  return acc;
}

// The composite nn::merge_adapter has always run: delta in float32 via at::matmul, scaled, rounded to
// W's dtype, then added / subtracted.
at::Tensor composite_delta(const at::Tensor& A, const at::Tensor& B, double scale, at::ScalarType dtype) {
  return (at::matmul(B.to(at::kFloat), A.to(at::kFloat)) * scale).to(dtype);
}

void check_merge_args(const at::Tensor& A, const at::Tensor& B, int64_t N, int64_t K,
                      const std::string& where) {
  check_matrix(A, where, "A");
  check_matrix(B, where, "B");
  check_same_device(A, B, where);
  if (A.size(0) < 1) fail(where + ": rank must be >= 1");
  if (A.size(1) != K || B.size(0) != N || B.size(1) != A.size(0)) {
    fail(where + ": expected A [R, " + std::to_string(K) + "] and B [" + std::to_string(N) + ", R], got A [" +
         std::to_string(A.size(0)) + ", " + std::to_string(A.size(1)) + "] and B [" +
         std::to_string(B.size(0)) + ", " + std::to_string(B.size(1)) + "]");
  }
}

#ifdef QLORA_WITH_CUDA
// A 2-D tensor as the kernels see it (MatrixRef for outputs, ConstMatrixRef for inputs).
template <typename Ref>
Ref ref_of(const at::Tensor& t) {
  Ref m;
  m.data = t.data_ptr();
  m.type = static_cast<int>(float_type(t, "lora", "tensor"));
  m.rows = t.size(0);
  m.cols = t.size(1);
  m.stride0 = t.stride(0);
  m.stride1 = t.stride(1);
  return m;
}

kernels::MatrixRef matrix_ref(at::Tensor& t) { return ref_of<kernels::MatrixRef>(t); }
kernels::ConstMatrixRef const_ref(const at::Tensor& t) { return ref_of<kernels::ConstMatrixRef>(t); }

void check_kernel(int err, const std::string& where) {
  if (err != 0) fail(where + ": CUDA kernel failed with error " + std::to_string(err));
}

// The kernels take one adapter dtype; mixed A/B dtypes are widened to float32 (exact).
std::pair<at::Tensor, at::Tensor> same_dtype(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() == b.scalar_type()) return {a, b};
  return {a.to(at::kFloat), b.to(at::kFloat)};
}
#endif

}  // namespace

void lora_add_(at::Tensor& y, const at::Tensor& t, const at::Tensor& B, double scale) {
  const std::string where = "lora_add_";
  check_matrix(y, where, "y");
  check_matrix(t, where, "t");
  check_matrix(B, where, "B");
  check_same_device(y, t, where);
  check_same_device(y, B, where);
  if (t.scalar_type() != B.scalar_type()) fail(where + ": t and B must share the adapter dtype");
  if (t.size(0) != y.size(0) || B.size(0) != y.size(1) || t.size(1) != B.size(1) || t.size(1) < 1) {
    fail(where + ": expected y [M, N], t [M, R], B [N, R] with R >= 1");
  }
  check_no_grad({&y, &t, &B}, where);
  check_writable(y, {&t, &B}, where);
  const float s = static_cast<float>(scale);
  if (y.is_cuda()) {
#ifdef QLORA_WITH_CUDA
    const c10::cuda::CUDAGuard device(y.device());  // raw launches go to the current device's stream
    check_kernel(kernels::lora_add(matrix_ref(y), const_ref(t), const_ref(B), s,
                                   at::cuda::getCurrentCUDAStream().stream()),
                 where);
#else
    fail(where + ": this build has no CUDA kernels (configure with QLORA_CUDA=ON)");
#endif
  } else {
    const at::Tensor tf = t.to(at::kFloat).contiguous();      // [M, R]
    const at::Tensor bt = B.to(at::kFloat).t().contiguous();  // [R, N]
    const quant::FloatType yt = float_type(y, where, "y");
    const int64_t M = y.size(0), N = y.size(1), R = t.size(1);
    void* yp = y.data_ptr();
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t n = 0; n < N; ++n) {
        const float acc = lowrank_acc(tf.data_ptr<float>(), bt.data_ptr<float>(), m, n, R, N);
        const int64_t idx = m * y.stride(0) + n * y.stride(1);
        quant::store_float(yp, yt, idx, std::fma(s, acc, quant::load_float(yp, yt, idx)));
      }
    }
  }
  y.unsafeGetTensorImpl()->bump_version();
}

void lora_merge_(at::Tensor& W, const at::Tensor& A, const at::Tensor& B, double scale, bool subtract) {
  const std::string where = subtract ? "lora_merge_ (unmerge)" : "lora_merge_";
  check_matrix(W, where, "W");
  check_merge_args(A, B, W.size(0), W.size(1), where);
  check_same_device(W, A, where);
  check_no_grad({&W, &A, &B}, where);
  if (!W.is_cuda()) {
    const at::Tensor delta = composite_delta(A, B, scale, W.scalar_type());
    if (subtract) {
      W.sub_(delta);
    } else {
      W.add_(delta);
    }
    return;
  }
#ifdef QLORA_WITH_CUDA
  const c10::cuda::CUDAGuard device(W.device());
  check_writable(W, {&A, &B}, where);
  const auto [a, b] = same_dtype(A, B);
  check_kernel(kernels::lora_merge(matrix_ref(W), const_ref(a), const_ref(b), static_cast<float>(scale),
                                   subtract, at::cuda::getCurrentCUDAStream().stream()),
               where);
  W.unsafeGetTensorImpl()->bump_version();
#else
  fail(where + ": this build has no CUDA kernels (configure with QLORA_CUDA=ON)");
#endif
}

at::Tensor lora_merge_4bit(const QuantState4bit& state, const at::Tensor& A, const at::Tensor& B,
                           double scale, at::ScalarType out_dtype) {
  const std::string where = "lora_merge_4bit";
  if (state.shape.size() != 2) fail(where + ": the 4-bit weight must be 2-D [out, in]");
  check_merge_args(A, B, state.shape[0], state.shape[1], where);
  if (A.device() != state.packed.device())
    fail(where + ": the adapter and the 4-bit weight are on different devices");
  check_no_grad({&A, &B}, where);
  if (!state.packed.is_cuda()) {
    at::Tensor W = dequantize_4bit(state, out_dtype);  // validates the state and the dtype
    W.add_(composite_delta(A, B, scale, out_dtype));
    return W;
  }
#ifdef QLORA_WITH_CUDA
  const c10::cuda::CUDAGuard device(state.packed.device());
  const at::Tensor absmax = state_absmax_f32(state);  // validates the state
  const at::Tensor packed = state.packed.contiguous();
  at::Tensor W = at::empty({state.shape[0], state.shape[1]}, packed.options().dtype(out_dtype));
  float_type(W, where, "out_dtype");
  kernels::AbsmaxSource src;
  src.absmax = absmax.data_ptr<float>();
  const auto [a, b] = same_dtype(A, B);
  check_kernel(
      kernels::lora_merge_4bit(packed.data_ptr<uint8_t>(), src, state.blocksize,
                               static_cast<int>(state.quant_type), matrix_ref(W), const_ref(a), const_ref(b),
                               static_cast<float>(scale), at::cuda::getCurrentCUDAStream().stream()),
      where);
  return W;
#else
  fail(where + ": this build has no CUDA kernels (configure with QLORA_CUDA=ON)");
#endif
}

void lora_merge_kernel_formula_(at::Tensor& W, const at::Tensor& A, const at::Tensor& B, double scale,
                                bool subtract) {
  const std::string where = "lora_merge_kernel_formula_";
  check_matrix(W, where, "W");
  check_merge_args(A, B, W.size(0), W.size(1), where);
  if (!W.is_cpu() || !A.is_cpu()) fail(where + ": CPU tensors only");
  check_writable(W, {&A, &B}, where);
  const at::Tensor bf = B.to(at::kFloat).contiguous();  // [N, R]
  const at::Tensor af = A.to(at::kFloat).contiguous();  // [R, K]
  const quant::FloatType wt = float_type(W, where, "W");
  const float s = static_cast<float>(scale);
  const int64_t N = W.size(0), K = W.size(1), R = A.size(0);
  void* wp = W.data_ptr();
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      const float d =
          round_through(wt, lowrank_acc(bf.data_ptr<float>(), af.data_ptr<float>(), n, k, R, K) * s);
      const int64_t idx = n * W.stride(0) + k * W.stride(1);
      const float v = quant::load_float(wp, wt, idx);
      quant::store_float(wp, wt, idx, subtract ? v - d : v + d);
    }
  }
  W.unsafeGetTensorImpl()->bump_version();
}

}  // namespace qlora::ops
