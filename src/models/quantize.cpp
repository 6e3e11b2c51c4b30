#include "qlora/models/quantize.h"

#include <ATen/ATen.h>

#include "qlora/core/error.h"
#include "qlora/io/checkpoint.h"
#include "qlora/ops/bnb_serialization.h"

namespace qlora::models {

namespace {

bool matches(const std::string& module, const std::string& name) {
  if (name.empty()) return false;
  if (module == name) return true;
  return module.size() > name.size() && module.compare(module.size() - name.size(), name.size(), name) == 0 &&
         module[module.size() - name.size() - 1] == '.';
}

}  // namespace

int64_t quantized_state_bytes(const nn::LinearBase& b) {
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

QuantizeReport quantize_linears(const std::vector<std::pair<std::string, nn::Linear*>>& linears,
                                const QuantizeOptions& o) {
  QuantizeReport report;
  if (!o.load_in_4bit && !o.load_in_8bit) return report;
  if (o.load_in_4bit && o.load_in_8bit)
    fail("quantization: load_in_4bit and load_in_8bit cannot both be set");
  for (const auto& [module, linear] : linears) {
    if (linear->base.quantized()) {  // read pre-quantized from a bitsandbytes checkpoint
      report.quantized.push_back(module);
      report.quantized_bytes += quantized_state_bytes(linear->base);
      continue;
    }
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
    report.quantized_bytes += quantized_state_bytes(linear->base);
    report.quantized.push_back(module);
  }
  return report;
}

bool read_prequantized(const Checkpoint& ckpt, const std::string& module, const std::vector<int64_t>& shape,
                       std::optional<at::ScalarType> compute_dtype, nn::LinearBase& base,
                       std::set<std::string>* used) {
  const std::string prefix = module + ".";
  const std::string w = prefix + "weight";
  const bool four_bit = ckpt.contains(w + ".quant_state.bitsandbytes__nf4") ||
                        ckpt.contains(w + ".quant_state.bitsandbytes__fp4");
  const bool int8 = ckpt.contains(prefix + "SCB");
  if (!four_bit && !int8) return false;
  if (four_bit && int8) fail(ckpt.path() + ": '" + module + "' has both 4-bit and int8 (SCB) tensors");
  auto lookup = [&](const std::string& name) {
    if (!ckpt.contains(name)) return at::Tensor();
    if (used != nullptr) used->insert(name);
    return ckpt.tensor(name).clone();  // own the memory rather than alias the file mapping
  };
  at::NoGradGuard no_grad;
  if (four_bit) {
    auto state =
        std::make_shared<ops::QuantState4bit>(ops::quant_state_from_tensors(lookup, prefix, ckpt.path()));
    if (state->shape != shape) {
      fail(ckpt.path() + ": 4-bit tensor '" + w + "' has quant_state shape " + shape_string(state->shape) +
           ", expected " + shape_string(shape) + " from the config");
    }
    base.compute_dtype = compute_dtype.value_or(state->dtype);
    base.q4 = std::move(state);
  } else {
    auto q8 = std::make_shared<ops::Int8Weight>(ops::int8_from_tensors(
        lookup(w), lookup(prefix + "SCB"), lookup(prefix + "weight_format"), prefix, ckpt.path()));
    if (q8->cb.sizes() != at::IntArrayRef(shape)) {
      fail(ckpt.path() + ": int8 tensor '" + w + "' has shape " + shape_string(q8->cb.sizes()) +
           ", expected " + shape_string(shape) + " from the config");
    }
    base.compute_dtype = compute_dtype.value_or(at::kFloat);
    base.int8_threshold =
        6.0;  // Linear8bitLt's default; the config's llm_int8_threshold is applied by callers
    base.q8 = std::move(q8);
  }
  base.weight = at::Tensor();
  return true;
}

}  // namespace qlora::models
