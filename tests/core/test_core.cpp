#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"
#include "qlora/core/python_repr.h"
#include "qlora/core/suggest.h"
#include "qlora/core/unicode.h"

namespace {

namespace fs = std::filesystem;

TEST(Unicode, LengthsAndOffsetsAreCodePoints) {
  const std::string text = "Tiếng Việt 😀";  // NFC: ế and ệ are single code points; emoji is 4 bytes
  EXPECT_EQ(qlora::utf8_length(text), 12u);
  const auto c2b = qlora::utf8_char_to_byte(text);
  ASSERT_EQ(c2b.size(), 13u);
  EXPECT_EQ(c2b[3], 5u);  // "Ti" + "ế" (3 bytes)
  EXPECT_EQ(c2b.back(), text.size());
  const auto b2c = qlora::utf8_byte_to_char(text);
  EXPECT_EQ(b2c[5], 3u);
  EXPECT_EQ(b2c[3], 2u);  // inside "ế" maps to that code point
  EXPECT_EQ(qlora::utf8_substr(text, 6, 10), "Việt");
}

TEST(Unicode, NfcComposesVietnamese) {
  const std::string nfd = "Vie\xcc\xa3\xcc\x82t";  // e + dot below + circumflex
  const std::string composed = qlora::nfc(nfd);
  EXPECT_EQ(composed, "Việt");
  EXPECT_EQ(qlora::utf8_length(nfd), 6u);
  EXPECT_EQ(qlora::utf8_length(composed), 4u);
}

TEST(Unicode, MalformedUtf8IsAnError) {
  EXPECT_FALSE(qlora::is_valid_utf8("ab\xff"));
  EXPECT_THROW(qlora::utf8_length("ab\xc3"), qlora::Error);
  EXPECT_THROW(qlora::nfc("\xed\xa0\x80"), qlora::Error);  // UTF-16 surrogate
}

TEST(Suggest, NearestKey) {
  EXPECT_EQ(qlora::edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(qlora::nearest("lerning_rate", {"learning_rate", "seed"}), "learning_rate");
  EXPECT_EQ(qlora::nearest("zzzzzz", {"learning_rate", "seed"}), "");
}

TEST(AtomicFile, CommitReplacesAndAbortLeavesNothing) {
  const fs::path dir = fs::path(::testing::TempDir()) / "atomic";
  fs::create_directories(dir);
  const std::string path = (dir / "out.txt").string();
  qlora::write_file_atomic(path, "first");
  {
    qlora::AtomicFile f(path);
    f.stream() << "second, never committed";
  }
  EXPECT_EQ(qlora::read_file(path), "first");
  for (const auto& entry : fs::directory_iterator(dir)) {
    EXPECT_EQ(entry.path().filename(), "out.txt") << "stray temporary file " << entry.path();
  }
  qlora::write_file_atomic(path, "second");
  EXPECT_EQ(qlora::read_file(path), "second");
}

TEST(Jsonl, MalformedLineNamesFileAndLine) {
  const std::string path = ::testing::TempDir() + "bad.jsonl";
  std::ofstream(path) << "{\"a\": 1}\n\n{\"a\": 2,}\n";
  int seen = 0;
  try {
    qlora::for_each_jsonl(path, [&](const qlora::Json&, int64_t) { ++seen; });
    FAIL() << "expected an error";
  } catch (const qlora::Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:3"), std::string::npos) << e.what();
  }
  EXPECT_EQ(seen, 1);
}

TEST(Jsonl, NonObjectLineIsAnError) {
  const std::string path = ::testing::TempDir() + "array.jsonl";
  std::ofstream(path) << "[1, 2]\n";
  EXPECT_THROW(qlora::for_each_jsonl(path, [](const qlora::Json&, int64_t) {}), qlora::Error);
}

TEST(Jsonl, ReadJsonFileReportsLine) {
  const std::string path = ::testing::TempDir() + "bad.json";
  std::ofstream(path) << "{\n  \"a\": 1,\n  \"b\": }\n";
  try {
    qlora::read_json_file(path);
    FAIL() << "expected an error";
  } catch (const qlora::Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.json:3"), std::string::npos) << e.what();
  }
}

}  // namespace

#include "qlora/core/progress.h"

namespace {

TEST(Progress, RenderShowsCountRateAndEta) {
  qlora::Progress p("train", 100);
  const std::string line = p.render(25, 50.0, {{"loss", "1.2345"}});
  EXPECT_NE(line.find("25/100"), std::string::npos) << line;
  EXPECT_NE(line.find("0.50/s"), std::string::npos) << line;
  EXPECT_NE(line.find("loss 1.2345"), std::string::npos) << line;
  EXPECT_NE(line.find("eta 2m30s"), std::string::npos) << line;  // 75 left at 0.5/s
  EXPECT_NE(line.find("[#####"), std::string::npos) << line;
}

TEST(Progress, FormatDuration) {
  EXPECT_EQ(qlora::Progress::format_duration(5), "5s");
  EXPECT_EQ(qlora::Progress::format_duration(185), "3m05s");
  EXPECT_EQ(qlora::Progress::format_duration(3720), "1h02m");
}

}  // namespace

#include "qlora/core/fs.h"

namespace {

TEST(Fs, PathHelpers) {
  EXPECT_EQ(qlora::fsys::join("a", "b"), "a/b");
  EXPECT_EQ(qlora::fsys::join("a/", "b"), "a/b");
  EXPECT_EQ(qlora::fsys::parent("a/b/c"), "a/b");
  EXPECT_EQ(qlora::fsys::parent("c"), ".");
  EXPECT_EQ(qlora::fsys::parent("/c"), "/");
  EXPECT_EQ(qlora::fsys::components("a//b/../c"), (std::vector<std::string>{"a", "b", "..", "c"}));
}

TEST(Fs, SameFileForExistingAndNewPaths) {
  const std::string dir = ::testing::TempDir() + "fs_same";
  qlora::fsys::create_directories(dir + "/sub");
  qlora::write_file_atomic(dir + "/x.txt", "x");
  EXPECT_TRUE(qlora::fsys::same_file(dir + "/x.txt", dir + "/sub/../x.txt"));
  EXPECT_TRUE(qlora::fsys::same_file(dir + "/new.txt", dir + "/sub/../new.txt"));  // neither exists
  EXPECT_FALSE(qlora::fsys::same_file(dir + "/x.txt", dir + "/new.txt"));
}

}  // namespace

namespace {

TEST(Fs, RemoveAllAndRename) {
  const std::string dir = ::testing::TempDir() + "fs_tree";
  qlora::fsys::create_directories(dir + "/a/b");
  qlora::write_file_atomic(dir + "/a/b/f.txt", "x");
  qlora::fsys::rename_path(dir + "/a", dir + "/c");
  EXPECT_TRUE(qlora::fsys::exists(dir + "/c/b/f.txt"));
  EXPECT_THROW(qlora::fsys::rename_path(dir + "/missing", dir + "/d"), qlora::Error);
  qlora::fsys::remove_all(dir);
  EXPECT_FALSE(qlora::fsys::exists(dir));
  qlora::fsys::remove_all(dir);  // a missing path is fine
}

}  // namespace

// repr(float) against CPython (tools/gen_python_repr_fixtures.py): exact strings, since files such as
// bitsandbytes' quant-state JSON are compared byte for byte.
TEST(PythonRepr, FloatReprEqualsCPython) {
  const qlora::Json fixture =
      qlora::read_json_file(std::string(QLORA_FIXTURES_DIR) + "/core/python_repr.json");
  ASSERT_GT(fixture.at("cases").size(), 500u);
  int mismatches = 0;
  for (const qlora::Json& c : fixture.at("cases")) {
    const double v = std::strtod(c.at("hex").get<std::string>().c_str(), nullptr);
    const std::string repr = qlora::python_float_repr(v);
    const std::string json = qlora::python_float_repr(v, /*json=*/true);
    if (repr != c.at("repr").get<std::string>() || json != c.at("json").get<std::string>()) {
      ++mismatches;
      ADD_FAILURE() << c.at("hex") << ": got " << repr << ", Python " << c.at("repr");
    }
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(qlora::python_float_repr(std::nan(""), true), "NaN");
  EXPECT_EQ(qlora::python_float_repr(-HUGE_VAL), "-inf");
}
