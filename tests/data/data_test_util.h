// Helpers shared by the data-preparation tests: a scratch folder per test, file I/O and error
// capture. Header-only so the test_*.cpp glob stays one file per behaviour group.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "error_of.h"
#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"

namespace qlora_test {

namespace fs = std::filesystem;

// A fresh folder under the gtest temp dir, removed afterwards.
class ScratchDir {
 public:
  ScratchDir() {
    static int serial = 0;  // several ScratchDirs may live in one test
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(::testing::TempDir()) /
           ("qlora_data_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" +
            std::to_string(::getpid()) + "_" + std::to_string(serial++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  // Names of the files in the folder, sorted: to check that no temporary file was left behind.
  std::vector<std::string> files() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  fs::path dir_;
};

inline std::string write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  return path;
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

inline std::vector<qlora::Json> read_jsonl(const std::string& path) {
  std::vector<qlora::Json> records;
  qlora::for_each_jsonl(path, [&](const qlora::Json& record, int64_t) { records.push_back(record); });
  return records;
}

// Where ../shared/data/<relative> is, or "" when the shared data folder is absent.
inline std::string shared_data(const std::string& relative) {
  const fs::path path = fs::path(QLORA_SOURCE_DIR) / ".." / "shared" / "data" / relative;
  return fs::exists(path) ? path.string() : "";
}

inline std::string fixture(const std::string& name) {
  return std::string(QLORA_FIXTURES_DIR) + "/data/" + name;
}

}  // namespace qlora_test

// Checks that `text` contains `part`, printing both when it does not.
#define EXPECT_CONTAINS(text, part)                          \
  EXPECT_NE(std::string(text).find(part), std::string::npos) \
      << "expected to find: " << (part) << "\n   in: " << (text)
