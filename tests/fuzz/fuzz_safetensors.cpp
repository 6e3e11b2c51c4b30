// libFuzzer target for the safetensors header parser (src/io/safetensors_header.cpp, no torch).
// Properties checked on every input:
//   1. parsing never crashes, reads out of bounds or throws anything but qlora::Error;
//   2. an accepted header describes tensors that tile the data region exactly, inside the file;
//   3. re-planning the accepted tensors with the writer and parsing that again gives the same
//      names, dtypes and shapes (writer and reader agree on everything the reader accepts).
// Each input is tried as a whole file and as header JSON wrapped in a valid envelope.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "qlora/core/error.h"
#include "qlora/io/safetensors_header.h"

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// Parses one file image and checks properties 2 and 3 when it is accepted.
void check_file(const uint8_t* data, size_t size) {
  qlora::SafetensorsHeader header;
  try {
    header = qlora::parse_safetensors_header(data, size, "fuzz.safetensors");
  } catch (const qlora::Error&) {
    return;
  }

  check(header.data_start >= 8 && header.data_start + header.data_size == size);
  uint64_t covered = 0;
  std::vector<qlora::SafetensorsTensorSpec> specs;
  for (const auto& e : header.entries) {
    check(e.begin == covered && e.end >= e.begin && e.end <= header.data_size);
    uint64_t numel = 1;
    for (int64_t d : e.shape) {
      check(d >= 0);
      numel *= static_cast<uint64_t>(d);
    }
    check(numel * qlora::safetensors_dtype_size(e.dtype) == e.nbytes());
    check(header.find(e.name) == &e);
    covered = e.end;
    specs.push_back({e.name, e.dtype, e.shape});
  }
  check(covered == header.data_size);

  const qlora::SafetensorsLayout layout = qlora::plan_safetensors(specs, header.metadata, "fuzz.out");
  check(layout.data_size == header.data_size);
  std::string file = layout.header;
  file.resize(file.size() + layout.data_size, '\0');
  const qlora::SafetensorsHeader again =
      qlora::parse_safetensors_header(reinterpret_cast<const uint8_t*>(file.data()), file.size(), "fuzz.out");
  check(again.entries.size() == header.entries.size() && again.metadata == header.metadata);
  for (const auto& e : header.entries) {
    const qlora::SafetensorsEntry* other = again.find(e.name);
    check(other != nullptr && other->dtype == e.dtype && other->shape == e.shape);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // 1. The input as a whole file.
  check_file(data, size);
  // 2. The input as header JSON (all but the last 2 bytes) with a correct length prefix and a
  //    zero-filled data region of u16(last 2 bytes) bytes, so mutations of the JSON reach the
  //    validation code without also having to fix up the length.
  if (size >= 2) {
    const size_t json_size = size - 2;
    const size_t data_size = data[json_size] | (static_cast<size_t>(data[json_size + 1]) << 8);
    std::vector<uint8_t> file(8 + json_size + data_size, 0);
    for (int i = 0; i < 8; ++i)
      file[i] = static_cast<uint8_t>((static_cast<uint64_t>(json_size) >> (8 * i)) & 0xff);
    std::copy(data, data + json_size, file.begin() + 8);
    check_file(file.data(), file.size());
  }
  return 0;
}
