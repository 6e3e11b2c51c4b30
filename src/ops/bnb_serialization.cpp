#include "qlora/ops/bnb_serialization.h"

#include <ATen/ATen.h>

#include "qlora/core/error.h"
#include "qlora/core/python_repr.h"

namespace qlora::ops {

namespace {

// str(torch.dtype).strip("torch.") as bnb writes it.
std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "float32";
    case at::kHalf:
      return "float16";
    case at::kBFloat16:
      return "bfloat16";
    default:
      fail("bnb serialization: unsupported dtype " + std::string(c10::toString(t)));
  }
}

at::ScalarType dtype_from_name(const std::string& name, const std::string& where) {
  if (name == "float32") return at::kFloat;
  if (name == "float16") return at::kHalf;
  if (name == "bfloat16") return at::kBFloat16;
  fail(where + ": unsupported dtype '" + name + "'");
}

at::Tensor bytes_tensor(const std::string& s) {
  at::Tensor t = at::empty({static_cast<int64_t>(s.size())}, at::kByte);
  std::copy(s.begin(), s.end(), reinterpret_cast<char*>(t.data_ptr<uint8_t>()));
  return t;
}

}  // namespace

std::string quant_state_json(const QuantState4bit& s) {
  // json.dumps defaults: ", " and ": " separators, insertion order of QuantState.as_dict.
  std::string shape = "[";
  for (size_t i = 0; i < s.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(s.shape[i]);
  shape += "]";
  std::string out = "{\"quant_type\": \"" + quant_type_name(s.quant_type) +
                    "\", \"blocksize\": " + std::to_string(s.blocksize) + ", \"dtype\": \"" +
                    dtype_name(s.dtype) + "\", \"shape\": " + shape;
  if (s.nested()) {
    // offset.item() is a Python float (double) that json.dumps writes with repr: nlohmann's grisu2
    // output is not always the shortest form (0.13041666150093079 vs Python's 0.1304166615009308).
    const double offset = static_cast<double>(s.offset.to(at::kCPU).item<float>());
    out += ", \"nested_blocksize\": " + std::to_string(s.nested_blocksize) +
           ", \"nested_dtype\": \"float32\", \"nested_offset\": " + python_float_repr(offset, /*json=*/true);
  }
  return out + "}";
}

void apply_quant_state_json(const std::string& text, QuantState4bit& s, const std::string& where) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const std::exception& e) {
    fail(where + ": quant_state is not JSON: " + e.what());
  }
  try {
    s.quant_type = parse_quant_type(j.at("quant_type").get<std::string>(), where);
    s.blocksize = j.at("blocksize").get<int64_t>();
    s.dtype = dtype_from_name(j.at("dtype").get<std::string>(), where);
    s.shape = j.at("shape").get<std::vector<int64_t>>();
    if (j.contains("nested_offset")) {
      s.nested_blocksize = j.at("nested_blocksize").get<int64_t>();
      if (j.at("nested_dtype").get<std::string>() != "float32")
        fail(where + ": nested_dtype must be float32");
      // from_dict: torch.tensor(float(nested_offset)) -> float32.
      s.offset = at::scalar_tensor(static_cast<float>(j.at("nested_offset").get<double>()), at::kFloat);
    }
  } catch (const nlohmann::json::exception& e) {
    fail(where + ": bad quant_state: " + e.what());
  }
}

BnbTensors quant_state_to_tensors(const QuantState4bit& s, const std::string& prefix) {
  const std::string w = prefix + "weight";
  BnbTensors out;
  out.emplace_back(w, s.packed.to(at::kCPU).contiguous());
  out.emplace_back(w + ".absmax", s.absmax.to(at::kCPU).contiguous());
  out.emplace_back(w + ".quant_map", s.code.to(at::kCPU).contiguous());
  if (s.nested()) {
    out.emplace_back(w + ".nested_absmax", s.nested_absmax.to(at::kCPU).contiguous());
    out.emplace_back(w + ".nested_quant_map", s.nested_code.to(at::kCPU).contiguous());
  }
  out.emplace_back(w + ".quant_state.bitsandbytes__" + quant_type_name(s.quant_type),
                   bytes_tensor(quant_state_json(s)));
  return out;
}

QuantState4bit quant_state_from_parts(const at::Tensor& packed, const at::Tensor& absmax,
                                      const at::Tensor& quant_map, const at::Tensor& nested_absmax,
                                      const at::Tensor& nested_quant_map, const at::Tensor& json_bytes,
                                      const std::string& json_key, const std::string& source) {
  const std::string where = source + ": " + json_key;
  if (!json_bytes.defined()) fail(source + ": no quant_state.bitsandbytes__nf4/fp4 key (" + json_key + ")");
  if (json_bytes.scalar_type() != at::kByte) fail(where + ": must be uint8");
  const at::Tensor jb = json_bytes.to(at::kCPU).contiguous();
  QuantState4bit s;
  apply_quant_state_json(std::string(reinterpret_cast<const char*>(jb.data_ptr<uint8_t>()), jb.numel()), s,
                         where);
  if (!packed.defined() || !absmax.defined() || !quant_map.defined()) {
    fail(where + ": missing weight, weight.absmax or weight.quant_map");
  }
  s.packed = packed.scalar_type() == at::kByte ? packed : packed.view(at::kByte);  // quant_storage views
  s.packed = s.packed.reshape({-1, 1});
  s.absmax = absmax;
  s.code = quant_map;
  if (s.offset.defined()) {
    if (!nested_absmax.defined() || !nested_quant_map.defined()) {
      fail(where + ": nested_offset without weight.nested_absmax / weight.nested_quant_map");
    }
    s.nested_absmax = nested_absmax;
    s.nested_code = nested_quant_map;
  }
  try {
    (void)state_absmax_f32(s);  // validates every size against shape and blocksize
  } catch (const Error& e) {
    fail(source + ": " + e.what());
  }
  return s;
}

BnbTensors int8_to_tensors(const Int8Weight& w, const std::string& prefix) {
  BnbTensors out;
  out.emplace_back(prefix + "weight", w.cb.to(at::kCPU).contiguous());
  out.emplace_back(prefix + "SCB", w.scb.to(at::kCPU).contiguous());
  out.emplace_back(prefix + "weight_format", at::scalar_tensor(0, at::kByte));  // "row"
  return out;
}

Int8Weight int8_from_tensors(const at::Tensor& weight, const at::Tensor& scb, const at::Tensor& weight_format,
                             const std::string& prefix, const std::string& source) {
  const std::string w = prefix + "weight";
  if (!weight.defined()) fail(source + ": missing tensor '" + w + "'");
  if (!scb.defined()) fail(source + ": missing tensor '" + prefix + "SCB'");
  if (weight.scalar_type() != at::kChar || weight.dim() != 2)
    fail(source + ": tensor '" + w + "' of an int8 checkpoint must be int8 [out, in]");
  if (scb.scalar_type() != at::kFloat || scb.dim() != 1 || scb.size(0) != weight.size(0)) {
    fail(source + ": tensor '" + prefix + "SCB' must be float32 [" + std::to_string(weight.size(0)) +
         "] (one absmax per row of '" + w + "')");
  }
  if (weight_format.defined()) {
    if (weight_format.numel() != 1 || weight_format.scalar_type() != at::kByte ||
        weight_format.to(at::kCPU).item<uint8_t>() != 0) {
      fail(source + ": tensor '" + prefix +
           "weight_format' must be uint8 0 (\"row\"); other layouts are not supported");
    }
  }
  return Int8Weight{weight, scb};
}

BnbQuantConfig parse_bnb_config(const Json& j, const std::string& where) {
  if (!j.is_object()) fail(where + ": quantization_config must be an object");
  if (j.value("quant_method", std::string()) != "bitsandbytes") {
    fail(where + ": quant_method must be \"bitsandbytes\"");
  }
  BnbQuantConfig c;
  try {
    c.load_in_4bit = j.value("load_in_4bit", j.value("_load_in_4bit", false));
    c.load_in_8bit = j.value("load_in_8bit", j.value("_load_in_8bit", false));
    c.bnb_4bit_quant_type = j.value("bnb_4bit_quant_type", c.bnb_4bit_quant_type);
    c.bnb_4bit_use_double_quant = j.value("bnb_4bit_use_double_quant", false);
    if (j.contains("bnb_4bit_compute_dtype") && !j["bnb_4bit_compute_dtype"].is_null()) {
      c.bnb_4bit_compute_dtype = j["bnb_4bit_compute_dtype"].get<std::string>();
    }
    c.bnb_4bit_quant_storage = j.value("bnb_4bit_quant_storage", c.bnb_4bit_quant_storage);
    c.llm_int8_threshold = j.value("llm_int8_threshold", c.llm_int8_threshold);
    c.llm_int8_has_fp16_weight = j.value("llm_int8_has_fp16_weight", false);
    c.llm_int8_enable_fp32_cpu_offload = j.value("llm_int8_enable_fp32_cpu_offload", false);
    if (j.contains("llm_int8_skip_modules") && !j["llm_int8_skip_modules"].is_null()) {
      c.llm_int8_skip_modules = j["llm_int8_skip_modules"].get<std::vector<std::string>>();
    }
  } catch (const nlohmann::json::exception& e) {
    fail(where + ": bad quantization_config: " + e.what());
  }
  if (c.load_in_4bit && c.load_in_8bit) fail(where + ": load_in_4bit and load_in_8bit are both true");
  parse_quant_type(c.bnb_4bit_quant_type, where + ": bnb_4bit_quant_type");
  dtype_from_name(c.bnb_4bit_compute_dtype, where + ": bnb_4bit_compute_dtype");
  return c;
}

Json bnb_config_to_json(const BnbQuantConfig& c) {
  Json j = Json::object();
  j["_load_in_4bit"] = c.load_in_4bit;
  j["_load_in_8bit"] = c.load_in_8bit;
  j["bnb_4bit_compute_dtype"] = c.bnb_4bit_compute_dtype;
  j["bnb_4bit_quant_storage"] = c.bnb_4bit_quant_storage;
  j["bnb_4bit_quant_type"] = c.bnb_4bit_quant_type;
  j["bnb_4bit_use_double_quant"] = c.bnb_4bit_use_double_quant;
  j["llm_int8_enable_fp32_cpu_offload"] = c.llm_int8_enable_fp32_cpu_offload;
  j["llm_int8_has_fp16_weight"] = c.llm_int8_has_fp16_weight;
  j["llm_int8_skip_modules"] = c.llm_int8_skip_modules ? Json(*c.llm_int8_skip_modules) : Json(nullptr);
  j["llm_int8_threshold"] = c.llm_int8_threshold;
  j["load_in_4bit"] = c.load_in_4bit;
  j["load_in_8bit"] = c.load_in_8bit;
  j["quant_method"] = "bitsandbytes";
  return j;
}

}  // namespace qlora::ops
