#include "qlora/ops/int8.h"

#include <ATen/ATen.h>

#include <vector>

#include "qlora/core/error.h"
#include "qlora/quant/int8.h"

namespace qlora::ops {

namespace {

struct RowQuant {
  at::Tensor q;             // int8 [rows, cols]
  at::Tensor stats;         // float32 [rows]
  at::Tensor outlier_cols;  // int64 [k]
};

RowQuant vectorwise_quant(const at::Tensor& a, double threshold, const std::string& where) {
  if (a.dim() != 2) fail(where + ": expected a 2-D tensor");
  const at::Tensor h = a.detach().to(at::kCPU).to(at::kHalf).contiguous();
  const int64_t rows = h.size(0), cols = h.size(1);
  RowQuant r;
  r.q = at::empty({rows, cols}, at::kChar);
  r.stats = at::empty({rows}, at::kFloat);
  std::vector<uint8_t> outliers(static_cast<size_t>(cols), 0);
  quant::int8_vectorwise_quant_reference(reinterpret_cast<const uint16_t*>(h.data_ptr<at::Half>()), rows,
                                         cols, static_cast<float>(threshold), r.q.data_ptr<int8_t>(),
                                         r.stats.data_ptr<float>(), outliers.data());
  std::vector<int64_t> cols_idx;
  for (int64_t c = 0; c < cols; ++c) {
    if (outliers[c]) cols_idx.push_back(c);
  }
  r.outlier_cols = at::tensor(cols_idx, at::kLong);
  return r;
}

void check_weight(const Int8Weight& w, const std::string& where) {
  if (!w.cb.defined() || w.cb.scalar_type() != at::kChar || w.cb.dim() != 2)
    fail(where + ": CB must be int8 [out, in]");
  if (!w.scb.defined() || w.scb.scalar_type() != at::kFloat || w.scb.numel() != w.cb.size(0)) {
    fail(where + ": SCB must be float32 [out]");
  }
}

}  // namespace

Int8Weight quantize_int8(const at::Tensor& w) {
  const std::string where = "quantize_int8";
  if (!at::isFloatingType(w.scalar_type())) fail(where + ": weight must be floating point");
  RowQuant r = vectorwise_quant(w, 0.0, where);
  return {r.q.to(w.device()), r.stats.to(w.device())};
}

at::Tensor dequantize_int8(const Int8Weight& w, at::ScalarType dtype) {
  check_weight(w, "dequantize_int8");
  // bnb: CB.to(dtype).mul_(SCB.unsqueeze(1) * (1/127)): one float32 product rounded to dtype.
  const at::Tensor scale = w.scb.unsqueeze(1).mul(1.0 / 127.0);
  return w.cb.to(dtype).mul_(scale);
}

at::Tensor matmul_int8(const at::Tensor& x, const Int8Weight& w, const at::Tensor& bias) {
  check_weight(w, "matmul_int8");
  if (x.size(-1) != w.cb.size(1)) fail("matmul_int8: x's last dimension must be in_features");
  const at::Tensor wd = dequantize_int8(w, x.scalar_type()).detach();
  return at::linear(x, wd, bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt);
}

at::Tensor matmul_int8_lt(const at::Tensor& x, const Int8Weight& w, const at::Tensor& bias,
                          double threshold) {
  const std::string where = "matmul_int8_lt";
  check_weight(w, where);
  if (x.size(-1) != w.cb.size(1)) fail(where + ": x's last dimension must be in_features");
  const at::Tensor a = x.reshape({-1, x.size(-1)});
  const RowQuant qa = vectorwise_quant(a, threshold, where);
  // int8_linear_matmul (exact int32), then int8_mm_dequant: A * (row * col) * (1/127^2) in float32.
  const at::Tensor acc = at::matmul(qa.q.to(at::kFloat), w.cb.to(at::kFloat).t()).to(at::kInt);
  at::Tensor out = acc * (qa.stats.reshape({-1, 1}) * w.scb.reshape({1, -1})) * 6.200124e-05;
  if (bias.defined()) out += bias;
  out = out.to(x.scalar_type());
  if (threshold > 0.0 && qa.outlier_cols.numel() > 0) {
    const at::Tensor sub_a = a.index_select(1, qa.outlier_cols).contiguous();
    const at::Tensor sub_cb = w.cb.index_select(1, qa.outlier_cols).contiguous();
    // int8_vectorwise_dequant: CB * SCB * (1/127) in float32, then x's dtype.
    const at::Tensor sub_b = (sub_cb * w.scb.reshape({-1, 1}) * 7.874015718698502e-3).to(x.scalar_type()).t();
    out = out.addmm(sub_a, sub_b);
  }
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = w.cb.size(0);
  return out.reshape(shape);
}

}  // namespace qlora::ops
