// Hostile safetensors files: each case corrupts a valid Python-written file and expects a
// qlora::Error that names the file and the offending tensor or key (never a crash).
#include <cstring>

#include "io/io_test_util.h"
#include "qlora/io/safetensors.h"

namespace qlora::test {
namespace {

// no_metadata.safetensors: {"w": F32 [2,2] at [0,16], "b": BF16 [3] at [16,22]}.
struct ValidFile {
  std::string json;  // header JSON without padding
  std::string data;  // data region
};

ValidFile valid_file() {
  const std::string bytes = read_file(io_fixture("no_metadata.safetensors"));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  ValidFile file{bytes.substr(8, n), bytes.substr(8 + n)};
  file.json.erase(file.json.find_last_not_of(' ') + 1);
  return file;
}

std::string assemble(std::string json, const std::string& data) {
  json.resize((json.size() + 7) / 8 * 8, ' ');
  std::string bytes(8, '\0');
  const uint64_t n = json.size();
  std::memcpy(bytes.data(), &n, 8);
  return bytes + json + data;
}

std::string replaced(std::string text, const std::string& from, const std::string& to) {
  const size_t pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << "'" << from << "' not in " << text;
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

// Writes `bytes` as corrupt.safetensors and expects open() and from_bytes() to fail with `parts`.
void expect_rejected(const std::string& bytes, std::vector<std::string> parts) {
  ScratchDir dir;
  const std::string path = dir.file("corrupt.safetensors");
  write_file_atomic(path, bytes);
  auto with_path = parts;
  with_path.push_back(path);
  expect_error([&] { SafetensorsFile::open(path); }, with_path);
  parts.push_back("mem.safetensors");
  expect_error([&] { SafetensorsFile::from_bytes(bytes, "mem.safetensors"); }, parts);
}

// The header JSON of the valid file with one substitution, and the unchanged data.
std::string with_header_edit(const std::string& from, const std::string& to) {
  const ValidFile file = valid_file();
  return assemble(replaced(file.json, from, to), file.data);
}

TEST(SafetensorsMalformed, ValidFileIsAccepted) {
  const ValidFile file = valid_file();
  EXPECT_EQ(SafetensorsFile::from_bytes(assemble(file.json, file.data)).entries().size(), 2u);
}

TEST(SafetensorsMalformed, EveryTruncationIsRejected) {
  const std::string bytes = read_file(io_fixture("dtypes.safetensors"));
  for (size_t size = 0; size < bytes.size(); ++size) {
    EXPECT_THROW(SafetensorsFile::from_bytes(bytes.substr(0, size), "cut.safetensors"), Error) << size;
  }
  expect_rejected(bytes.substr(0, 5), {"too short"});
  expect_rejected(std::string(), {"0 bytes", "too short"});
}

TEST(SafetensorsMalformed, TruncatedDataNamesTheTensor) {
  const ValidFile file = valid_file();
  expect_rejected(assemble(file.json, file.data.substr(0, file.data.size() - 1)),
                  {"'b'", "past the data region"});
}

TEST(SafetensorsMalformed, HeaderLengthPastTheEnd) {
  std::string bytes = read_file(io_fixture("no_metadata.safetensors"));
  const uint64_t n = bytes.size();
  std::memcpy(bytes.data(), &n, 8);
  expect_rejected(bytes, {"header length", "past the end"});
}

TEST(SafetensorsMalformed, AbsurdHeaderLength) {
  std::string bytes = read_file(io_fixture("no_metadata.safetensors"));
  std::memset(bytes.data(), 0xff, 8);
  expect_rejected(bytes, {"header length 18446744073709551615", "exceeds"});
}

TEST(SafetensorsMalformed, HeaderNotJson) {
  const ValidFile file = valid_file();
  expect_rejected(assemble(file.json.substr(0, 20), file.data), {"not valid JSON"});
  expect_rejected(assemble("{\"w\xff\":1}", ""), {"not valid JSON"});  // invalid UTF-8
  std::string nul_padded = assemble(file.json, file.data);
  nul_padded[8 + file.json.size()] = '\0';
  expect_rejected(nul_padded, {"not valid JSON", "NUL"});
  expect_rejected(assemble("\xEF\xBB\xBF" + file.json, file.data), {"not valid JSON", "byte-order mark"});
}

TEST(SafetensorsMalformed, HeaderNotAnObject) {
  expect_rejected(assemble("[1,2,3]", ""), {"must be a JSON object", "array"});
  expect_rejected(with_header_edit(R"("w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})", R"("w":5)"),
                  {"'w'", "expected an object"});
}

TEST(SafetensorsMalformed, EntryMissingAField) {
  expect_rejected(with_header_edit(R"("dtype":"F32",)", ""), {"'w'", "missing \"dtype\""});
  expect_rejected(with_header_edit(R"("shape":[3],)", ""), {"'b'", "missing \"shape\""});
  expect_rejected(with_header_edit(R"(,"data_offsets":[0,16])", ""), {"'w'", "missing \"data_offsets\""});
}

TEST(SafetensorsMalformed, BadShape) {
  expect_rejected(with_header_edit("[2,2]", "[-2,2]"), {"'w'", "non-negative integers", "-2"});
  expect_rejected(with_header_edit("[2,2]", "[2.0,2]"), {"'w'", "non-negative integers"});
  expect_rejected(with_header_edit("[2,2]", R"(["2",2])"), {"'w'", "non-negative integers"});
  expect_rejected(with_header_edit("[2,2]", "2"), {"'w'", "shape must be an array"});
  expect_rejected(with_header_edit("[2,2]", "[4294967296,4294967296,4294967296]"), {"'w'", "overflows"});
  expect_rejected(with_header_edit("[2,2]", "[0,9223372036854775808]"), {"'w'", "too large"});
}

TEST(SafetensorsMalformed, BadDtype) {
  expect_rejected(with_header_edit(R"("F32")", R"("F4")"), {"'w'", "dtype 'F4'", "not support"});
  expect_rejected(with_header_edit(R"("F32")", R"("Q4_K")"), {"'w'", "unsupported dtype 'Q4_K'"});
  expect_rejected(with_header_edit(R"("F32")", R"("F33")"), {"'w'", "'F33'", "did you mean 'F32'"});
  expect_rejected(with_header_edit(R"("F32")", "32"), {"'w'", "dtype must be a string"});
}

TEST(SafetensorsMalformed, BadOffsets) {
  expect_rejected(with_header_edit("[0,16]", "[0,1600]"), {"'w'", "past the data region"});
  expect_rejected(with_header_edit("[16,22]", "[22,16]"), {"'b'", "end before begin"});
  expect_rejected(with_header_edit("[0,16]", "[0,16.0]"), {"'w'", "non-negative integers"});
  expect_rejected(with_header_edit("[0,16]", "[-1,16]"), {"'w'", "non-negative integers"});
  expect_rejected(with_header_edit("[0,16]", "[0]"), {"'w'", "[begin, end]"});
  expect_rejected(with_header_edit("[0,16]", "[0,16,32]"), {"'w'", "[begin, end]"});
}

TEST(SafetensorsMalformed, ShapeDisagreesWithByteCount) {
  // w claims 2x3 F32 = 24 bytes inside a 16-byte span.
  expect_rejected(with_header_edit("[2,2]", "[2,3]"), {"'w'", "needs 24 bytes", "span 16"});
  expect_rejected(with_header_edit(R"("F32")", R"("F64")"), {"'w'", "needs 32 bytes"});
}

TEST(SafetensorsMalformed, OverlappingTensors) {
  // b moved into w's bytes: [8,14] overlaps [0,16].
  expect_rejected(with_header_edit("[16,22]", "[8,14]"), {"'b'", "overlap", "'w'"});
}

TEST(SafetensorsMalformed, GapsAndTrailingBytes) {
  // The Python library requires the data region to be covered exactly (Metadata::validate and
  // MetadataIncompleteBuffer); so do we.
  const ValidFile file = valid_file();
  std::string json = replaced(replaced(file.json, "[0,16]", "[2,18]"), "[16,22]", "[18,24]");
  expect_rejected(assemble(json, "xx" + file.data), {"'w'", "gap of 2 bytes"});
  expect_rejected(assemble(file.json, file.data + "zz"), {"2 bytes after the last tensor", "'b'"});
  json = replaced(file.json, "[16,22]", "[18,24]");
  expect_rejected(assemble(json, file.data + "zz"), {"'b'", "gap of 2 bytes", "after tensor 'w'"});
}

TEST(SafetensorsMalformed, DuplicateNames) {
  expect_rejected(with_header_edit(R"("b":{)", R"("w":{)"), {"duplicate key 'w'"});
  // The same name spelled with an escape is still the same name.
  expect_rejected(with_header_edit(R"("b":{)", R"("\u0077":{)"), {"duplicate key 'w'"});
  expect_rejected(with_header_edit(R"("dtype":"F32")", R"("dtype":"F32","dtype":"F32")"),
                  {"duplicate key 'dtype'", "'w'"});
}

TEST(SafetensorsMalformed, BadMetadata) {
  expect_rejected(with_header_edit("{", R"({"__metadata__":{"format":1},)"),
                  {"__metadata__", "'format'", "string"});
  expect_rejected(with_header_edit("{", R"({"__metadata__":"pt",)"), {"__metadata__", "must be an object"});
  expect_rejected(with_header_edit("{", R"({"__metadata__":{"a":"1","a":"2"},)"),
                  {"duplicate key 'a'", "__metadata__"});
  // null reads as absent, as in serde's Option.
  EXPECT_TRUE(
      SafetensorsFile::from_bytes(with_header_edit("{", R"({"__metadata__":null,)")).metadata().empty());
}

TEST(SafetensorsMalformed, DeepNesting) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  expect_rejected(with_header_edit("{", "{\"__metadata__\":" + deep + ","), {"nested too deeply"});
}

}  // namespace
}  // namespace qlora::test
