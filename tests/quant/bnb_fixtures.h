// Reads tests/fixtures/quant/*.safetensors (written by tools/gen_bnb_fixtures.py) without qlora_io, which
// test_quant does not link: a safetensors file is an 8-byte header length, a JSON header and raw bytes.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "qlora/core/jsonl.h"

namespace qlora_test {

inline std::string quant_fixture(const std::string& name) {
  return std::string(QLORA_FIXTURES_DIR) + "/quant/" + name;
}

struct BnbFixture {
  std::map<std::string, at::Tensor> tensors;
  qlora::Json metadata;
  std::vector<std::string> order;  // names in data order

  const at::Tensor& at(const std::string& name) const {
    const auto it = tensors.find(name);
    if (it == tensors.end()) throw std::runtime_error("fixture has no tensor " + name);
    return it->second;
  }
};

inline BnbFixture read_bnb_fixture(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string bytes = ss.str();
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  const qlora::Json header = qlora::Json::parse(bytes.substr(8, header_len));
  const char* data = bytes.data() + 8 + header_len;
  static const std::map<std::string, at::ScalarType> kTypes = {{"F32", at::kFloat},     {"F16", at::kHalf},
                                                               {"BF16", at::kBFloat16}, {"U8", at::kByte},
                                                               {"I8", at::kChar},       {"I64", at::kLong}};
  BnbFixture out;
  std::vector<std::pair<int64_t, std::string>> by_offset;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      out.metadata = v;
      continue;
    }
    const auto shape = v.at("shape").get<std::vector<int64_t>>();
    const auto off = v.at("data_offsets").get<std::vector<int64_t>>();
    at::Tensor t = at::empty(shape, kTypes.at(v.at("dtype").get<std::string>()));
    std::memcpy(t.data_ptr(), data + off[0], static_cast<size_t>(off[1] - off[0]));
    out.tensors[name] = t;
    by_offset.emplace_back(off[0], name);
  }
  std::sort(by_offset.begin(), by_offset.end());
  for (const auto& p : by_offset) out.order.push_back(p.second);
  return out;
}

// Bitwise equality (so -0.0 != +0.0 and NaN patterns count), with the first mismatch in the message.
inline ::testing::AssertionResult bytes_equal(const at::Tensor& got, const at::Tensor& want) {
  if (got.scalar_type() != want.scalar_type()) {
    return ::testing::AssertionFailure() << "dtype " << got.scalar_type() << " vs " << want.scalar_type();
  }
  if (got.numel() != want.numel())
    return ::testing::AssertionFailure() << "numel " << got.numel() << " vs " << want.numel();
  const at::Tensor g = got.to(at::kCPU).contiguous(), w = want.contiguous();
  const auto* a = static_cast<const uint8_t*>(g.data_ptr());
  const auto* b = static_cast<const uint8_t*>(w.data_ptr());
  const size_t item = g.element_size();
  for (int64_t i = 0; i < g.numel(); ++i) {
    if (std::memcmp(a + i * item, b + i * item, item) != 0) {
      return ::testing::AssertionFailure()
             << "first difference at element " << i << ": " << g.reshape(-1)[i].to(at::kDouble).item<double>()
             << " vs " << w.reshape(-1)[i].to(at::kDouble).item<double>();
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace qlora_test
