// safetensors reading and writing against files written by the Python library
// (tests/fixtures/io, from tools/gen_io_fixtures.py).
#include <cstring>
#include <set>

#include "io/io_test_util.h"
#include "qlora/io/safetensors.h"

namespace qlora::test {
namespace {

TEST(Safetensors, ReadsEveryDtypeWrittenByPython) {
  for (const auto& [file_name, file_spec] : expected_json().at("files").items()) {
    SCOPED_TRACE(file_name);
    const SafetensorsFile file = SafetensorsFile::open(io_fixture(file_name));
    std::set<std::string> expected_names;
    for (const auto& [name, spec] : file_spec.at("tensors").items()) {
      expected_names.insert(name);
      const SafetensorsEntry& entry = file.entry(name);
      EXPECT_EQ(safetensors_dtype_name(entry.dtype), spec.at("dtype").get<std::string>()) << name;
      expect_same_tensor(file.tensor(name), tensor_from_json(spec), file_name + ": " + name);
    }
    const std::vector<std::string> names = file.names();
    EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), expected_names);
  }
}

TEST(Safetensors, CoversTheHuggingFaceDtypes) {
  const Json& tensors = expected_json().at("files").at("dtypes.safetensors").at("tensors");
  std::set<std::string> seen;
  for (const auto& item : tensors.items()) seen.insert(item.value().at("dtype").get<std::string>());
  for (const char* dtype : {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"}) {
    EXPECT_EQ(seen.count(dtype), 1u) << dtype << " missing from the fixture";
  }
}

TEST(Safetensors, ReadsMetadata) {
  for (const auto& [file_name, file_spec] : expected_json().at("files").items()) {
    SCOPED_TRACE(file_name);
    const SafetensorsFile file = SafetensorsFile::open(io_fixture(file_name));
    SafetensorsMetadata expected;
    if (!file_spec.at("metadata").is_null()) expected = file_spec.at("metadata").get<SafetensorsMetadata>();
    EXPECT_EQ(file.metadata(), expected);
  }
  EXPECT_GE(SafetensorsFile::open(io_fixture("multi_metadata.safetensors")).metadata().size(), 4u);
}

TEST(Safetensors, MissingTensorSuggestsANearName) {
  const SafetensorsFile file = SafetensorsFile::open(io_fixture("dtypes.safetensors"));
  EXPECT_FALSE(file.contains("f33"));
  expect_error([&] { file.tensor("f33"); }, {"dtypes.safetensors", "'f33'", "did you mean"});
}

TEST(Safetensors, TensorsAliasTheMappingAndOutliveTheFile) {
  at::Tensor first;
  {
    const SafetensorsFile file = SafetensorsFile::open(io_fixture("dtypes.safetensors"));
    first = file.tensor("f64");
    EXPECT_EQ(file.tensor("f64").data_ptr(), first.data_ptr()) << "aligned data should not be copied";
  }
  const at::Tensor expected =
      tensor_from_json(expected_json().at("files").at("dtypes.safetensors").at("tensors").at("f64"));
  expect_same_tensor(first, expected, "f64 after the file object is gone");
}

TEST(Safetensors, InPlaceChangesNeverReachTheFile) {
  const std::string path = io_fixture("no_metadata.safetensors");
  const std::string before = read_file(path);
  {
    const SafetensorsFile file = SafetensorsFile::open(path);
    file.tensor("w").add_(1.0);  // must not fault on the mapping, nor write through
  }
  EXPECT_EQ(read_file(path), before);
}

TEST(Safetensors, MisalignedDataIsCopiedNotAliased) {
  // A hand-written file (not the Python layout): a 1-byte tensor first puts the F32 at offset 1.
  std::string json = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[1,9]}})";
  json.resize((json.size() + 7) / 8 * 8, ' ');
  std::string bytes(8, '\0');
  bytes[0] = static_cast<char>(json.size());
  bytes += json;
  bytes += '\x07';
  const float values[2] = {1.5f, -2.25f};
  bytes.append(reinterpret_cast<const char*>(values), sizeof(values));
  const SafetensorsFile file = SafetensorsFile::from_bytes(bytes, "misaligned.safetensors");
  const at::Tensor b = file.tensor("b");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data_ptr()) % alignof(float), 0u);
  EXPECT_EQ(b[0].item<float>(), 1.5f);
  EXPECT_EQ(b[1].item<float>(), -2.25f);
  EXPECT_EQ(file.tensor("a").item<uint8_t>(), 7);
}

// The fixture files rebuilt from expected.json, with the metadata Python was given.
NamedTensors fixture_tensors(const Json& file_spec) {
  NamedTensors tensors;
  for (const auto& [name, spec] : file_spec.at("tensors").items())
    tensors.emplace_back(name, tensor_from_json(spec));
  return tensors;
}

TEST(SafetensorsWriter, BytesEqualPythonSaveFile) {
  ScratchDir dir;
  for (const auto& [file_name, file_spec] : expected_json().at("files").items()) {
    // safetensors writes two or more metadata keys in Rust HashMap order, which changes from run
    // to run; qlora sorts them. That file is only compared after reading (ReadsMetadata).
    if (file_name == "multi_metadata.safetensors") continue;
    SCOPED_TRACE(file_name);
    SafetensorsMetadata metadata;
    if (!file_spec.at("metadata").is_null()) metadata = file_spec.at("metadata").get<SafetensorsMetadata>();
    const NamedTensors tensors = fixture_tensors(file_spec);
    const std::string python = read_file(io_fixture(file_name));
    EXPECT_EQ(serialize_safetensors(tensors, metadata), python);
    save_safetensors(dir.file(file_name), tensors, metadata);
    EXPECT_EQ(read_file(dir.file(file_name)), python);
  }
}

TEST(SafetensorsWriter, RoundTripsEveryDtypeAndLayout) {
  ScratchDir dir;
  at::manual_seed(3);
  NamedTensors tensors;
  const auto options = at::TensorOptions().dtype(at::kDouble);
  const at::Tensor base = at::randn({5, 7}, options) * 10;  // within every float8 range
  for (const auto& item : expected_json().at("files").at("dtypes.safetensors").at("tensors").items()) {
    const at::ScalarType type =
        to_scalar_type(*parse_safetensors_dtype(item.value().at("dtype").get<std::string>()));
    const bool non_negative = !at::isFloatingType(type) && !c10::isSignedType(type);
    tensors.emplace_back("x." + item.key(), (non_negative ? base.abs() : base).to(type));
  }
  tensors.emplace_back("transposed", at::randn({4, 6}).t());  // non-contiguous input
  tensors.emplace_back("sliced", at::arange(40, at::kInt).reshape({8, 5}).slice(1, 1, 4));
  tensors.emplace_back("complex", at::randn({3}, at::kComplexFloat));
  tensors.emplace_back("zero_dim", at::scalar_tensor(7, at::kLong));
  tensors.emplace_back("empty", at::empty({0, 5}, at::kBFloat16));
  const SafetensorsMetadata metadata = {{"format", "pt"}, {"b", "2"}, {"a", "\xc3\xa9\n\""}};
  save_safetensors(dir.file("round.safetensors"), tensors, metadata);

  const SafetensorsFile file = SafetensorsFile::open(dir.file("round.safetensors"));
  EXPECT_EQ(file.metadata(), metadata);
  EXPECT_EQ(file.entries().size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    const at::Tensor read = file.tensor(name);
    ASSERT_EQ(read.scalar_type(), tensor.scalar_type()) << name;
    if (tensor.is_complex()) {
      EXPECT_TRUE(at::equal(read, tensor)) << name;
    } else {
      expect_same_tensor(read, tensor, name);
    }
  }
}

TEST(SafetensorsWriter, RejectsWhatPythonRejects) {
  ScratchDir dir;
  const std::string path = dir.file("bad.safetensors");
  expect_error(
      [&] {
        save_safetensors(path, {{"w", at::ones({2})}, {"w", at::ones({3})}});
      },
      {"bad.safetensors", "duplicate tensor name 'w'"});
  expect_error(
      [&] {
        save_safetensors(path, {{"z", at::ones({2}, at::kComplexDouble)}});
      },
      {"bad.safetensors", "'z'"});
  expect_error(
      [&] {
        save_safetensors(path, {{"u", at::Tensor()}});
      },
      {"bad.safetensors", "'u'", "undefined"});
  expect_error(
      [&] {
        save_safetensors(path, {{"__metadata__", at::ones({1})}});
      },
      {"bad.safetensors", "__metadata__"});
  expect_error(
      [&] {
        save_safetensors(path, {{std::string("bad\xff"), at::ones({1})}});
      },
      {"bad.safetensors", "UTF-8"});
  EXPECT_FALSE(path_exists(path)) << "a failed save must leave no file behind";
}

TEST(SafetensorsWriter, OverwritesAtomically) {
  ScratchDir dir;
  const std::string path = dir.file("w.safetensors");
  save_safetensors(path, {{"w", at::ones({2})}});
  const SafetensorsFile old_file = SafetensorsFile::open(path);
  const at::Tensor old_w = old_file.tensor("w");
  save_safetensors(path, {{"w", at::zeros({2})}});  // replaces the file while it is mapped
  EXPECT_EQ(old_w.sum().item<float>(), 2.0f) << "a rename must not disturb the old mapping";
  EXPECT_EQ(SafetensorsFile::open(path).tensor("w").sum().item<float>(), 0.0f);
  EXPECT_EQ(list_dir(dir.str()), std::vector<std::string>{"w.safetensors"}) << "temporary file left behind";
}

}  // namespace
}  // namespace qlora::test
