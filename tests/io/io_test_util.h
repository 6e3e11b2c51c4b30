// Helpers shared by the tests/io suites: fixture paths, scratch folders, error expectations and
// rebuilding the fixture tensors from expected.json (written by tools/gen_io_fixtures.py).
#pragma once

#include <ATen/ATen.h>
#include <dirent.h>
#include <ftw.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"
#include "qlora/io/safetensors.h"

namespace qlora::test {

inline std::string io_fixture(const std::string& name) {
  return std::string(QLORA_FIXTURES_DIR) + "/io/" + name;
}

inline const Json& expected_json() {
  static const Json json = read_json_file(io_fixture("expected.json"));
  return json;
}

// File-system helpers on POSIX calls: std::filesystem is unsafe in torch-linked binaries
// (libtorch.so exports its own copies; its remove_all jumps to a null pointer).
inline bool path_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

inline void remove_tree(const std::string& path) {
  ::nftw(
      path.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

inline void copy_file(const std::string& from, const std::string& to) {
  write_file_atomic(to, read_file(from));
}

// Sorted file names in `dir`.
inline std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* handle = ::opendir(dir.c_str())) {
    while (const dirent* entry = ::readdir(handle)) {
      const std::string name = entry->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    ::closedir(handle);
  }
  std::sort(names.begin(), names.end());
  return names;
}

inline std::string base_name(const std::string& path) { return path.substr(path.find_last_of('/') + 1); }

// A fresh, empty folder for one test, removed when the object dies.
class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string tmp = ::testing::TempDir();
    if (!tmp.empty() && tmp.back() == '/') tmp.pop_back();
    path_ =
        tmp + "/qlora_io_" + std::to_string(::getpid()) + "_" + info->test_suite_name() + "_" + info->name();
    remove_tree(path_);
    ::mkdir(path_.c_str(), 0755);
  }
  ~ScratchDir() { remove_tree(path_); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& str() const { return path_; }

 private:
  std::string path_;
};

// Runs `fn`, expecting a qlora::Error whose message contains every one of `parts`.
inline void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const auto& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos) << "missing '" << part << "' in: " << message;
    }
    return;
  }
  ADD_FAILURE() << "expected a qlora::Error mentioning '" << (parts.empty() ? "" : parts[0]) << "'";
}

// The tensor expected.json describes: {"dtype", "shape", "values" (flat, row-major)}.
inline at::Tensor tensor_from_json(const Json& spec) {
  const auto dtype = parse_safetensors_dtype(spec.at("dtype").get<std::string>());
  EXPECT_TRUE(dtype.has_value());
  const at::ScalarType type = to_scalar_type(*dtype);
  const std::vector<int64_t> shape = spec.at("shape").get<std::vector<int64_t>>();
  const Json& values = spec.at("values");
  at::Tensor flat;
  if (type == at::kBool) {
    std::vector<uint8_t> v;
    for (const auto& x : values) v.push_back(x.get<bool>() ? 1 : 0);
    flat = at::tensor(at::ArrayRef<uint8_t>(v), at::kByte).to(at::kBool);
  } else if (at::isFloatingType(type)) {
    flat = at::tensor(values.get<std::vector<double>>(), at::kDouble).to(type);
  } else {
    flat = at::tensor(values.get<std::vector<int64_t>>(), at::kLong).to(type);
  }
  return flat.reshape(shape);
}

// Exact equality of values, dtype and shape, for every dtype (compared through float64 or int64,
// both exact for the fixture values).
inline void expect_same_tensor(const at::Tensor& actual, const at::Tensor& expected,
                               const std::string& what) {
  ASSERT_EQ(actual.scalar_type(), expected.scalar_type()) << what;
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  const at::ScalarType wide = at::isFloatingType(actual.scalar_type()) ? at::kDouble : at::kLong;
  EXPECT_TRUE(at::equal(actual.to(wide), expected.to(wide))) << what << "\nactual:\n"
                                                             << actual.to(wide) << "\nexpected:\n"
                                                             << expected.to(wide);
}

}  // namespace qlora::test
