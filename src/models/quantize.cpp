#include "qlora/models/quantize.h"

#include <ATen/ATen.h>

#include "qlora/core/error.h"

namespace qlora::models {

namespace {

bool matches(const std::string& module, const std::string& name) {
  if (name.empty()) return false;
  if (module == name) return true;
  return module.size() > name.size() && module.compare(module.size() - name.size(), name.size(), name) == 0 &&
         module[module.size() - name.size() - 1] == '.';
}

int64_t state_bytes(const nn::LinearBase& b) {
  int64_t n = 0;
  if (b.q4) {
    for (const at::Tensor* t :
         {&b.q4->packed, &b.q4->absmax, &b.q4->nested_absmax, &b.q4->nested_code, &b.q4->code})
      if (t->defined()) n += t->numel() * t->element_size();
  } else if (b.q8) {
    n = b.q8->cb.numel() + b.q8->scb.numel() * 4;
  }
  return n;
}

}  // namespace

QuantizeReport quantize_linears(const std::vector<std::pair<std::string, nn::Linear*>>& linears,
                                const QuantizeOptions& o) {
  QuantizeReport report;
  if (!o.load_in_4bit && !o.load_in_8bit) return report;
  if (o.load_in_4bit && o.load_in_8bit)
    fail("quantization: load_in_4bit and load_in_8bit cannot both be set");
  for (const auto& [module, linear] : linears) {
    bool skip = matches(module, o.output_module);
    for (const auto& s : o.skip_modules) skip = skip || matches(module, s);
    if (skip || !linear->base.weight.defined()) {
      report.skipped.push_back(module);
      continue;
    }
    report.quantized_params += linear->base.weight.numel();
    if (o.load_in_4bit) {
      nn::quantize_base_4bit(linear->base, o.quant_type, o.blocksize, o.double_quant, o.compute_dtype);
    } else {
      nn::quantize_base_int8(linear->base, o.compute_dtype, o.int8_threshold);
    }
    report.quantized_bytes += state_bytes(linear->base);
    report.quantized.push_back(module);
  }
  return report;
}

}  // namespace qlora::models
