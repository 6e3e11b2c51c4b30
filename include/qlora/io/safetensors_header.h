// The safetensors header: parsing, validation and layout planning, in plain C++ (no torch), so the
// libFuzzer target can exercise every byte of untrusted input without linking libtorch.
//
// File layout: u64 little-endian N | N bytes of JSON | data region. The JSON maps tensor names to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data region) plus an
// optional "__metadata__" string->string map.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace qlora {

// The dtypes qlora reads and writes, in the order of the Rust `safetensors::Dtype` enum (which
// lists them by increasing alignment). The writer sorts tensors by this order, descending, so the
// order must not change. Sub-byte types (F4, F6_*) are left out: they are rejected with an error.
enum class SafetensorsDtype : uint8_t {
  BOOL,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  F8_E8M0,
  F8_E4M3FNUZ,
  F8_E5M2FNUZ,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  C64,
  F64,
  I64,
  U64,
};

// "F32", "BF16", ...: the spelling used in the header.
std::string_view safetensors_dtype_name(SafetensorsDtype dtype);
std::optional<SafetensorsDtype> parse_safetensors_dtype(std::string_view name);
// Bytes per element.
size_t safetensors_dtype_size(SafetensorsDtype dtype);

using SafetensorsMetadata = std::map<std::string, std::string>;

struct SafetensorsEntry {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::F32;
  std::vector<int64_t> shape;  // every dim >= 0; [] is a scalar
  uint64_t begin = 0;          // byte offsets into the data region, begin <= end
  uint64_t end = 0;

  uint64_t nbytes() const { return end - begin; }
};

// Upper bound on the JSON header, as in the Rust library (MAX_HEADER_SIZE).
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

struct SafetensorsHeader {
  uint64_t data_start = 0;                // 8 + N: file offset of the data region
  uint64_t data_size = 0;                 // bytes in the data region
  std::vector<SafetensorsEntry> entries;  // ascending data offsets
  SafetensorsMetadata metadata;           // "__metadata__"; empty when absent

  // nullptr when no tensor has that name.
  const SafetensorsEntry* find(const std::string& name) const;

 private:
  friend SafetensorsHeader parse_safetensors_header(const uint8_t*, size_t, const std::string&);
  std::unordered_map<std::string, size_t> index_;
};

// Parses and validates a whole safetensors file held in memory (`size` is the file size; only the
// header is read, the data region is only bounds-checked). Throws qlora::Error naming `source`
// and the tensor or key concerned. Accepts exactly what the Python/Rust library accepts, plus it
// rejects duplicate keys (serde keeps the last one silently; a duplicate is a corrupt file).
SafetensorsHeader parse_safetensors_header(const uint8_t* data, size_t size, const std::string& source);

// What the writer needs to know about one tensor.
struct SafetensorsTensorSpec {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::F32;
  std::vector<int64_t> shape;
};

struct SafetensorsLayout {
  std::string header;                     // the 8-byte length, the JSON, the space padding
  std::vector<SafetensorsEntry> entries;  // in the order their bytes follow the header
  uint64_t data_size = 0;
};

// Lays tensors out exactly as `safetensors.torch.save_file` does: sorted by dtype alignment
// (descending), then by name (bytewise); compact JSON with "__metadata__" first (omitted when
// empty); header padded with spaces to a multiple of 8. Metadata keys are written in sorted order;
// the Rust library writes them in HashMap order, which varies between runs when there are two or
// more keys, so byte equality with Python holds for at most one metadata key.
// Throws Error (naming `path`) on duplicate names, negative dims, or names that are not UTF-8.
SafetensorsLayout plan_safetensors(std::vector<SafetensorsTensorSpec> tensors,
                                   const SafetensorsMetadata& metadata, const std::string& path);

}  // namespace qlora
