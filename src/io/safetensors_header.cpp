// Header parsing and layout planning. No torch here: tests/fuzz compiles this file with clang and
// libFuzzer. Every check is written against the Rust reference (safetensors/src/tensor.rs,
// `SafeTensors::read_metadata` and `Metadata::validate`).
#include "qlora/io/safetensors_header.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "qlora/core/error.h"
#include "qlora/core/suggest.h"

namespace qlora {

namespace {

using nlohmann::json;

struct DtypeInfo {
  SafetensorsDtype dtype;
  std::string_view name;
  size_t size;
};

// Same order as the enum.
constexpr std::array<DtypeInfo, 19> kDtypes = {{
    {SafetensorsDtype::BOOL, "BOOL", 1},
    {SafetensorsDtype::U8, "U8", 1},
    {SafetensorsDtype::I8, "I8", 1},
    {SafetensorsDtype::F8_E5M2, "F8_E5M2", 1},
    {SafetensorsDtype::F8_E4M3, "F8_E4M3", 1},
    {SafetensorsDtype::F8_E8M0, "F8_E8M0", 1},
    {SafetensorsDtype::F8_E4M3FNUZ, "F8_E4M3FNUZ", 1},
    {SafetensorsDtype::F8_E5M2FNUZ, "F8_E5M2FNUZ", 1},
    {SafetensorsDtype::I16, "I16", 2},
    {SafetensorsDtype::U16, "U16", 2},
    {SafetensorsDtype::F16, "F16", 2},
    {SafetensorsDtype::BF16, "BF16", 2},
    {SafetensorsDtype::I32, "I32", 4},
    {SafetensorsDtype::U32, "U32", 4},
    {SafetensorsDtype::F32, "F32", 4},
    {SafetensorsDtype::C64, "C64", 8},
    {SafetensorsDtype::F64, "F64", 8},
    {SafetensorsDtype::I64, "I64", 8},
    {SafetensorsDtype::U64, "U64", 8},
}};

const DtypeInfo& info(SafetensorsDtype dtype) { return kDtypes.at(static_cast<size_t>(dtype)); }

constexpr const char* kMetadataKey = "__metadata__";
// Real headers nest three levels deep; anything deeper is garbage and would only cost stack.
constexpr int kMaxJsonDepth = 16;

std::string in_quotes(const std::string& s) { return "'" + s + "'"; }

// A JSON value for an error message, cut short: a hostile header can be 100 MB.
std::string brief(const json& value) {
  std::string text = value.dump();
  if (text.size() > 64) text = text.substr(0, 61) + "...";
  return text;
}

// Throws "SOURCE: tensor 'NAME': MESSAGE".
[[noreturn]] void fail_tensor(const std::string& source, const std::string& name, const std::string& msg) {
  fail_at(source, -1, "tensor " + in_quotes(name) + ": " + msg);
}

// Parses the header JSON, rejecting duplicate keys at any level (nlohmann keeps the last one).
json parse_json_strict(const char* begin, const char* end, const std::string& source) {
  std::vector<std::set<std::string>> seen;  // keys of each open object
  std::string entry;                        // the top-level key being parsed, for messages
  json::parser_callback_t check = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > kMaxJsonDepth) fail_at(source, -1, "header JSON is nested too deeply");
    switch (event) {
      case json::parse_event_t::object_start:
        seen.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!seen.empty()) seen.pop_back();
        break;
      case json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (seen.size() == 1) {
          entry = key;
          if (!seen.back().insert(key).second) {
            fail_at(source, -1, "duplicate key " + in_quotes(key) + " in the header");
          }
        } else if (!seen.empty() && !seen.back().insert(key).second) {
          fail_at(source, -1, "duplicate key " + in_quotes(key) + " inside " + in_quotes(entry));
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(begin, end, check);
  } catch (const json::exception& e) {
    fail_at(source, -1, std::string("header is not valid JSON: ") + e.what());
  }
}

uint64_t read_offset(const json& value, const std::string& source, const std::string& name) {
  if (!value.is_number_unsigned()) {
    fail_tensor(source, name, "data_offsets must be non-negative integers, got " + brief(value));
  }
  return value.get<uint64_t>();
}

SafetensorsEntry parse_entry(const std::string& name, const json& value, uint64_t data_size,
                             const std::string& source) {
  if (!value.is_object()) {
    fail_tensor(source, name, std::string("expected an object, got ") + value.type_name());
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(field)) fail_tensor(source, name, std::string("missing \"") + field + "\"");
  }
  SafetensorsEntry entry;
  entry.name = name;

  const json& dtype = value["dtype"];
  if (!dtype.is_string()) fail_tensor(source, name, "dtype must be a string, got " + brief(dtype));
  const std::string& dtype_name = dtype.get_ref<const std::string&>();
  const auto parsed = parse_safetensors_dtype(dtype_name);
  if (!parsed && (dtype_name == "F4" || dtype_name.rfind("F6_", 0) == 0)) {
    fail_tensor(
        source, name,
        "dtype " + in_quotes(dtype_name) + " packs several values per byte; qlora does not support it");
  }
  if (!parsed) {
    std::vector<std::string> known;
    for (const auto& d : kDtypes) known.emplace_back(d.name);
    fail_tensor(source, name, "unsupported dtype " + in_quotes(dtype_name) + did_you_mean(dtype_name, known));
  }
  entry.dtype = *parsed;

  // Element count with overflow checks, in the same order as Rust's try_fold(checked_mul).
  const json& shape = value["shape"];
  if (!shape.is_array()) fail_tensor(source, name, "shape must be an array, got " + brief(shape));
  uint64_t numel = 1;
  for (const json& dim : shape) {
    if (!dim.is_number_unsigned()) {
      fail_tensor(source, name, "shape entries must be non-negative integers, got " + brief(dim));
    }
    const uint64_t d = dim.get<uint64_t>();
    if (d > static_cast<uint64_t>(INT64_MAX))
      fail_tensor(source, name, "dimension " + brief(dim) + " too large");
    if (__builtin_mul_overflow(numel, d, &numel))
      fail_tensor(source, name, "shape " + brief(shape) + " overflows");
    entry.shape.push_back(static_cast<int64_t>(d));
  }
  uint64_t expected_bytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(info(entry.dtype).size), &expected_bytes)) {
    fail_tensor(source, name, "shape " + brief(shape) + " overflows");
  }

  const json& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2) {
    fail_tensor(source, name, "data_offsets must be [begin, end], got " + brief(offsets));
  }
  entry.begin = read_offset(offsets[0], source, name);
  entry.end = read_offset(offsets[1], source, name);
  if (entry.end < entry.begin)
    fail_tensor(source, name, "data_offsets " + brief(offsets) + " end before begin");
  if (entry.end > data_size) {
    fail_tensor(source, name,
                "data_offsets " + brief(offsets) + " go past the data region (" + std::to_string(data_size) +
                    " bytes; file truncated?)");
  }
  if (entry.nbytes() != expected_bytes) {
    fail_tensor(source, name,
                "shape " + brief(shape) + " of " + std::string(info(entry.dtype).name) + " needs " +
                    std::to_string(expected_bytes) + " bytes but data_offsets " + brief(offsets) + " span " +
                    std::to_string(entry.nbytes()));
  }
  return entry;
}

SafetensorsMetadata parse_metadata(const json& value, const std::string& source) {
  SafetensorsMetadata metadata;
  if (value.is_null()) return metadata;  // serde reads null as an absent Option
  if (!value.is_object()) {
    fail_at(source, -1, std::string("__metadata__ must be an object, got ") + value.type_name());
  }
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string()) {
      fail_at(source, -1, "__metadata__ value of " + in_quotes(key) + " must be a string, got " + brief(v));
    }
    metadata.emplace(key, v.get<std::string>());
  }
  return metadata;
}

}  // namespace

std::string_view safetensors_dtype_name(SafetensorsDtype dtype) { return info(dtype).name; }

size_t safetensors_dtype_size(SafetensorsDtype dtype) { return info(dtype).size; }

std::optional<SafetensorsDtype> parse_safetensors_dtype(std::string_view name) {
  for (const auto& d : kDtypes) {
    if (d.name == name) return d.dtype;
  }
  return std::nullopt;
}

const SafetensorsEntry* SafetensorsHeader::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries[it->second];
}

SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size, const std::string& source) {
  if (size < 8) {
    fail_at(
        source, -1,
        "file is " + std::to_string(size) + " bytes, too short for a safetensors header (needs at least 8)");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];  // little-endian, independent of the host
  if (n > kSafetensorsMaxHeaderBytes) {
    fail_at(source, -1,
            "header length " + std::to_string(n) + " exceeds the limit of " +
                std::to_string(kSafetensorsMaxHeaderBytes) + " bytes (not a safetensors file?)");
  }
  if (n > size - 8) {
    fail_at(source, -1,
            "header length " + std::to_string(n) + " goes past the end of the file (" + std::to_string(size) +
                " bytes; truncated?)");
  }
  SafetensorsHeader header;
  header.data_start = 8 + n;
  header.data_size = size - header.data_start;

  const char* text = reinterpret_cast<const char*>(data + 8);
  // nlohmann's lexer stops at a NUL byte as if the input ended there, so "{...}\0garbage" would
  // parse; serde_json (and JSON) reject it. A NUL is never valid in a header.
  // nlohmann also skips a UTF-8 byte-order mark, which serde_json rejects.
  if (n >= 3 && std::memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
    fail_at(source, -1, "header is not valid JSON: starts with a UTF-8 byte-order mark");
  }
  if (const void* nul = std::memchr(text, '\0', n)) {
    fail_at(source, -1,
            "header is not valid JSON: NUL byte at header offset " +
                std::to_string(static_cast<const char*>(nul) - text));
  }
  const json root = parse_json_strict(text, text + n, source);
  if (!root.is_object()) {
    fail_at(source, -1, std::string("header must be a JSON object, got ") + root.type_name());
  }
  for (const auto& [key, value] : root.items()) {
    if (key == kMetadataKey) {
      header.metadata = parse_metadata(value, source);
    } else {
      header.entries.push_back(parse_entry(key, value, header.data_size, source));
    }
  }

  // Like Rust's Metadata::validate: in offset order, each tensor starts where the previous one
  // ended and the last one ends at the end of the file. The Python library rejects gaps, overlaps
  // and trailing bytes alike (InvalidOffset / MetadataIncompleteBuffer), so we do too.
  std::sort(header.entries.begin(), header.entries.end(), [](const auto& a, const auto& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const auto& entry : header.entries) {
    if (entry.begin < covered) {
      fail_tensor(source, entry.name,
                  "data_offsets [" + std::to_string(entry.begin) + "," + std::to_string(entry.end) +
                      "] overlap tensor " + in_quotes(previous->name));
    }
    if (entry.begin > covered) {
      fail_tensor(source, entry.name,
                  "data_offsets [" + std::to_string(entry.begin) + "," + std::to_string(entry.end) +
                      "] leave a gap of " + std::to_string(entry.begin - covered) + " bytes before it" +
                      (previous ? " (after tensor " + in_quotes(previous->name) + ")" : std::string()));
    }
    covered = entry.end;
    previous = &entry;
  }
  if (covered != header.data_size) {
    fail_at(source, -1,
            std::to_string(header.data_size - covered) + " bytes after the last tensor" +
                (previous ? " " + in_quotes(previous->name) : std::string()) +
                " are not covered by any tensor (corrupt or truncated header?)");
  }
  header.index_.reserve(header.entries.size());
  for (size_t i = 0; i < header.entries.size(); ++i) header.index_.emplace(header.entries[i].name, i);
  return header;
}

SafetensorsLayout plan_safetensors(std::vector<SafetensorsTensorSpec> tensors,
                                   const SafetensorsMetadata& metadata, const std::string& path) {
  // Descending dtype (alignment), then name: every tensor starts aligned for its dtype.
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) {
    if (a.dtype != b.dtype) return a.dtype > b.dtype;
    return a.name < b.name;
  });
  for (size_t i = 1; i < tensors.size(); ++i) {
    if (tensors[i].name == tensors[i - 1].name)
      fail_at(path, -1, "duplicate tensor name " + in_quotes(tensors[i].name));
  }

  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    if (metadata.count(kMetadataKey) != 0) {
      fail_at(path, -1, "metadata key '__metadata__' is reserved");
    }
    auto& m = root[kMetadataKey] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
  }
  SafetensorsLayout layout;
  for (auto& spec : tensors) {
    if (spec.name == kMetadataKey) fail_at(path, -1, "'__metadata__' cannot be a tensor name");
    uint64_t numel = 1;
    for (int64_t d : spec.shape) {
      if (d < 0) fail_tensor(path, spec.name, "negative dimension " + std::to_string(d));
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel))
        fail_tensor(path, spec.name, "too large");
    }
    SafetensorsEntry entry;
    entry.name = std::move(spec.name);
    entry.dtype = spec.dtype;
    entry.shape = std::move(spec.shape);
    entry.begin = layout.data_size;
    entry.end = layout.data_size + numel * safetensors_dtype_size(spec.dtype);
    layout.data_size = entry.end;
    nlohmann::ordered_json tensor_json;
    tensor_json["dtype"] = std::string(safetensors_dtype_name(entry.dtype));
    tensor_json["shape"] = entry.shape;
    tensor_json["data_offsets"] = {entry.begin, entry.end};
    root[entry.name] = std::move(tensor_json);
    layout.entries.push_back(std::move(entry));
  }

  std::string text;
  try {
    // serde_json's compact form: no spaces, UTF-8 unescaped, control characters as \uXXXX
    // (lowercase hex) except \b \f \n \r \t. nlohmann's dump() matches it byte for byte.
    text = root.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::ordered_json::error_handler_t::strict);
  } catch (const nlohmann::json::exception& e) {
    fail_at(path, -1, std::string("tensor names and metadata must be valid UTF-8: ") + e.what());
  }
  text.resize((text.size() + 7) / 8 * 8, ' ');
  const uint64_t n = text.size();
  layout.header.resize(8);
  for (int i = 0; i < 8; ++i) layout.header[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  layout.header += text;
  return layout;
}

}  // namespace qlora
