// metrics.jsonl and TensorBoard event files. The event bytes are pinned by a fixture that real
// TensorBoard read (tools/check_tb_events.py); literals marked "protobuf" below are what
// tensorboard.compat.proto's Event.SerializeToString() gives for the same message.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <regex>

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/core/jsonl.h"
#include "qlora/train/metrics_writer.h"
#include "qlora/train/tb_event_writer.h"

namespace {

using qlora::train::MetricsWriter;
using qlora::train::MetricsWriterOptions;
using qlora::train::Split;

const std::string kFixtureDir = std::string(QLORA_FIXTURES_DIR) + "/train";
const std::string kFixtureEventName = "events.out.tfevents.1767225600.fixture-host.4242.0";

// A fresh folder per test (std::filesystem is off limits in torch-linked binaries).
std::string make_temp_dir() {
  std::string pattern = qlora::fsys::join(::testing::TempDir(), "qlora_train_XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return pattern;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (const unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

// A clock that returns the given times in order (then keeps the last one).
std::function<double()> fixed_clock(std::vector<double> times) {
  auto state = std::make_shared<std::pair<std::vector<double>, size_t>>(std::move(times), 0);
  return [state] {
    auto& [t, i] = *state;
    return t[std::min(i++, t.size() - 1)];
  };
}

// ---- A minimal TFRecord + Event reader, independent of the writer's code paths. ----

struct RecordFile {
  std::vector<std::string> records;
  bool torn_tail = false;  // the file ends inside a record (what a kill mid-write leaves)
};

uint64_t load_le(const std::string& bytes, size_t at, int size) {
  uint64_t value = 0;
  for (int i = size - 1; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes[at + i]);
  return value;
}

// Throws std::runtime_error("offset N: ...") on a CRC mismatch.
RecordFile read_tfrecords(const std::string& bytes) {
  RecordFile out;
  size_t at = 0;
  while (at < bytes.size()) {
    if (bytes.size() - at < 12) {
      out.torn_tail = true;
      return out;
    }
    const uint64_t length = load_le(bytes, at, 8);
    if (load_le(bytes, at + 8, 4) != qlora::train::masked_crc32c(bytes.data() + at, 8)) {
      throw std::runtime_error("offset " + std::to_string(at) + ": length CRC mismatch");
    }
    if (bytes.size() - at - 12 < length + 4) {
      out.torn_tail = true;
      return out;
    }
    const std::string payload = bytes.substr(at + 12, length);
    if (load_le(bytes, at + 12 + length, 4) != qlora::train::masked_crc32c(payload.data(), payload.size())) {
      throw std::runtime_error("offset " + std::to_string(at) + ": data CRC mismatch");
    }
    out.records.push_back(payload);
    at += 12 + length + 4;
  }
  return out;
}

struct Event {
  double wall_time = 0.0;
  int64_t step = 0;
  std::string file_version;
  std::vector<qlora::train::TbScalar> scalars;
};

struct WireReader {
  const std::string& bytes;
  size_t at = 0;

  bool done() const { return at >= bytes.size(); }
  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (done()) throw std::runtime_error("truncated varint");
      const auto byte = static_cast<unsigned char>(bytes[at++]);
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if ((byte & 0x80) == 0) return value;
    }
    throw std::runtime_error("varint too long");
  }
  uint64_t fixed(int size) {
    if (bytes.size() - at < static_cast<size_t>(size)) throw std::runtime_error("truncated fixed field");
    const uint64_t value = load_le(bytes, at, size);
    at += size;
    return value;
  }
  std::string len() {
    const uint64_t n = varint();
    if (bytes.size() - at < n) throw std::runtime_error("truncated length-delimited field");
    std::string out = bytes.substr(at, n);
    at += n;
    return out;
  }
};

// Only the fields the writer emits; anything else is an error, so a stray field cannot hide.
Event decode_event(const std::string& bytes) {
  Event event;
  WireReader r{bytes};
  while (!r.done()) {
    const uint64_t key = r.varint();
    if (key == 0x09) {
      const uint64_t bits = r.fixed(8);
      std::memcpy(&event.wall_time, &bits, 8);
    } else if (key == 0x10) {
      event.step = static_cast<int64_t>(r.varint());
    } else if (key == 0x1A) {
      event.file_version = r.len();
    } else if (key == 0x2A) {
      const std::string summary = r.len();
      WireReader s{summary};
      while (!s.done()) {
        if (s.varint() != 0x0A) throw std::runtime_error("unexpected Summary field");
        const std::string value = s.len();
        WireReader v{value};
        qlora::train::TbScalar scalar;
        while (!v.done()) {
          const uint64_t value_key = v.varint();
          if (value_key == 0x0A) {
            scalar.tag = v.len();
          } else if (value_key == 0x15) {
            const auto bits = static_cast<uint32_t>(v.fixed(4));
            std::memcpy(&scalar.value, &bits, 4);
          } else {
            throw std::runtime_error("unexpected Summary.Value field");
          }
        }
        event.scalars.push_back(scalar);
      }
    } else {
      throw std::runtime_error("unexpected Event field key " + std::to_string(key));
    }
  }
  return event;
}

uint32_t float_bits(float value) {
  uint32_t bits = 0;
  std::memcpy(&bits, &value, 4);
  return bits;
}

// The run the fixture holds: warmup from learning rate 0 at step 0 (both proto3 defaults), an
// eval, a diverged loss (inf, then NaN), a step past 2^32 and a negative value.
std::string write_fixture_run(const std::string& run_dir) {
  MetricsWriterOptions options;
  options.event_file_name = kFixtureEventName;
  options.clock = fixed_clock({1767225600.0, 1767225600.0, 1767225612.3456, 1767225630.5, 1767229200.125,
                               1767232800.75, 1767236400.0});
  MetricsWriter writer(run_dir, options);
  writer.log(Split::kTrain, 0, 0.0, {{"loss", 2.75}, {"learning_rate", 0.0}});
  writer.log(Split::kTrain, 10, 0.25, {{"loss", 2.0625}, {"learning_rate", 2e-4}, {"grad_norm", 1.5}});
  writer.log(Split::kEval, 10, 0.25, {{"loss", 2.1}, {"exact_match", 50.0}, {"f1", 62.5}});
  writer.log(Split::kTrain, 300, 7.5,
             {{"loss", std::numeric_limits<double>::infinity()}, {"learning_rate", 1e-4}});
  writer.log(Split::kTrain, 5000000000, 8.0, {{"loss", std::numeric_limits<double>::quiet_NaN()}});
  writer.log(Split::kEval, 5000000000, 8.0, {{"loss", -0.5}});
  writer.close();
  return writer.event_path();
}

// ---- CRC-32C ----

TEST(Crc32c, StandardCheckValue) {
  EXPECT_EQ(qlora::train::crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(qlora::train::crc32c("", 0), 0u);
}

TEST(Crc32c, Rfc3720Vectors) {  // RFC 3720 appendix B.4
  std::string zeros(32, '\0'), ones(32, '\xff'), up(32, '\0'), down(32, '\0');
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<char>(i);
    down[i] = static_cast<char>(31 - i);
  }
  EXPECT_EQ(qlora::train::crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(qlora::train::crc32c(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(qlora::train::crc32c(up.data(), 32), 0x46DD794Eu);
  EXPECT_EQ(qlora::train::crc32c(down.data(), 32), 0x113FDB5Cu);
  const unsigned char read_pdu[48] = {0x01, 0xc0, 0, 0, 0, 0, 0,    0, 0,    0, 0, 0,    0, 0, 0, 0,
                                      0x14, 0,    0, 0, 0, 0, 0x04, 0, 0,    0, 0, 0x14, 0, 0, 0, 0x18,
                                      0x28, 0,    0, 0, 0, 0, 0,    0, 0x02, 0, 0, 0,    0, 0, 0, 0};
  EXPECT_EQ(qlora::train::crc32c(read_pdu, sizeof read_pdu), 0xD9963A56u);
}

TEST(Crc32c, RunningChecksumEqualsOneShot) {
  const std::string text = "123456789";
  const uint32_t first = qlora::train::crc32c(text.data(), 4);
  EXPECT_EQ(qlora::train::crc32c(text.data() + 4, 5, first), 0xE3069283u);
}

TEST(Crc32c, MaskedAsTensorFlow) {  // tensorboard's masked_crc32c(b"123456789")
  EXPECT_EQ(qlora::train::masked_crc32c("123456789", 9), 0xC78AB0E5u);
}

// ---- Event encoding ----

TEST(TbEvents, ScalarEventBytesAreProtobufs) {
  EXPECT_EQ(hex(qlora::train::encode_scalar_event(1.5, 3, "a", 1.0f)),
            "09000000000000f83f10032a0a0a080a0161150000803f");  // protobuf
}

TEST(TbEvents, DefaultFieldsAreLeftOutButAZeroValueIsWritten) {
  EXPECT_EQ(hex(qlora::train::encode_scalar_event(0.0, 0, "a", 0.0f)),
            "2a0a0a080a01611500000000");  // protobuf
  EXPECT_EQ(hex(qlora::train::encode_file_version_event(1767225600.0)),
            "09000000406e55da411a0d627261696e2e4576656e743a32");  // protobuf
}

TEST(TbEvents, NegativeStepIsTenByteVarint) {
  const std::string bytes = qlora::train::encode_scalar_event(0.0, -1, "a", 0.0f);
  EXPECT_EQ(hex(bytes.substr(0, 11)), "10ffffffffffffffffff01");  // protobuf Event(step=-1)
  EXPECT_EQ(decode_event(bytes).step, -1);
}

TEST(TbEvents, FrameLayout) {
  const std::string frame = qlora::train::tfrecord_frame("abc");
  ASSERT_EQ(frame.size(), 8u + 4u + 3u + 4u);
  EXPECT_EQ(hex(frame.substr(0, 8)), "0300000000000000");
  EXPECT_EQ(load_le(frame, 8, 4), qlora::train::masked_crc32c(frame.data(), 8));
  EXPECT_EQ(frame.substr(12, 3), "abc");
  EXPECT_EQ(load_le(frame, 15, 4), qlora::train::masked_crc32c("abc", 3));
}

TEST(TbEvents, FileName) {
  EXPECT_EQ(qlora::train::tb_event_file_name(1767225600, "gpu-01", 4242, 3),
            "events.out.tfevents.1767225600.gpu-01.4242.3");
}

// ---- The fixture that real TensorBoard read ----

TEST(MetricsWriter, EventFileMatchesFixture) {
  const std::string run_dir = make_temp_dir();
  const std::string written = qlora::read_file(write_fixture_run(run_dir));
  if (const char* out = std::getenv("QLORA_TB_FIXTURE_OUT")) {
    qlora::write_file_atomic(qlora::fsys::join(out, kFixtureEventName), written);
    GTEST_SKIP() << "wrote " << qlora::fsys::join(out, kFixtureEventName)
                 << "; now run tools/check_tb_events.py on it";
  }
  const std::string expected = qlora::read_file(qlora::fsys::join(kFixtureDir, kFixtureEventName));
  EXPECT_EQ(hex(written), hex(expected));
}

TEST(MetricsWriter, FixtureScalarsEqualWhatTensorBoardRead) {
  const std::string bytes = qlora::read_file(qlora::fsys::join(kFixtureDir, kFixtureEventName));
  const qlora::Json expected = qlora::read_json_file(qlora::fsys::join(kFixtureDir, "tb_expected.json"));
  const RecordFile file = read_tfrecords(bytes);
  ASSERT_FALSE(file.torn_tail);
  ASSERT_EQ(file.records.size(), expected["records"].get<size_t>());
  const Event first = decode_event(file.records[0]);
  EXPECT_EQ(first.file_version, expected["file_version"].get<std::string>());
  EXPECT_EQ(first.wall_time, expected["file_version_wall_time"].get<double>());

  std::map<std::string, std::vector<Event>> by_tag;  // one scalar per event
  for (size_t i = 1; i < file.records.size(); ++i) {
    const Event event = decode_event(file.records[i]);
    ASSERT_EQ(event.scalars.size(), 1u);
    by_tag[event.scalars[0].tag].push_back(event);
  }
  ASSERT_EQ(by_tag.size(), expected["scalars"].size());
  for (const auto& [tag, seen] : expected["scalars"].items()) {
    ASSERT_EQ(by_tag.count(tag), 1u) << tag;
    const auto& ours = by_tag[tag];
    ASSERT_EQ(ours.size(), seen.size()) << tag;
    for (size_t i = 0; i < ours.size(); ++i) {
      SCOPED_TRACE(tag + " #" + std::to_string(i));
      EXPECT_EQ(ours[i].step, seen[i]["step"].get<int64_t>());
      EXPECT_EQ(ours[i].wall_time, seen[i]["wall_time"].get<double>());
      EXPECT_EQ(float_bits(ours[i].scalars[0].value),
                std::stoul(seen[i]["value_bits"].get<std::string>(), nullptr, 16));
    }
  }
  // The values a user sees (float32 in TensorBoard).
  EXPECT_EQ(expected["scalars"]["train/learning_rate"][1]["value"].get<double>(), static_cast<float>(2e-4));
  EXPECT_TRUE(expected["scalars"]["train/loss"][2]["value"].is_null());  // inf
  EXPECT_EQ(expected["scalars"]["eval/f1"][0]["value"].get<double>(), 62.5);
  EXPECT_EQ(expected["scalars"]["eval/loss"][1]["step"].get<int64_t>(), 5000000000);
}

TEST(TbReader, EveryFlippedBitIsDetectedByCrc) {
  const std::string bytes = qlora::read_file(qlora::fsys::join(kFixtureDir, kFixtureEventName));
  ASSERT_NO_THROW(read_tfrecords(bytes));
  for (size_t at = 0; at < bytes.size(); ++at) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = bytes;
      bad[at] = static_cast<char>(bad[at] ^ (1 << bit));
      // A flipped length bit fails the length CRC, so it cannot pass for a torn record either.
      ASSERT_THROW(read_tfrecords(bad), std::runtime_error) << "byte " << at << " bit " << bit;
    }
  }
}

TEST(TbReader, KilledWriteLeavesATornTailNotACorruptFile) {
  const std::string bytes = qlora::read_file(qlora::fsys::join(kFixtureDir, kFixtureEventName));
  const RecordFile whole = read_tfrecords(bytes);
  const RecordFile cut = read_tfrecords(bytes.substr(0, bytes.size() - 5));
  EXPECT_TRUE(cut.torn_tail);
  EXPECT_EQ(cut.records.size(), whole.records.size() - 1);
}

// ---- metrics.jsonl ----

TEST(MetricsJsonl, OneObjectPerLineInLogOrder) {
  const std::string run_dir = make_temp_dir();
  MetricsWriterOptions options;
  options.tensorboard = false;
  options.clock = fixed_clock({1000.25, 1001.5});
  MetricsWriter writer(run_dir, options);
  writer.log(Split::kTrain, 10, 0.5, {{"loss", 1.5}, {"learning_rate", 2e-4}});
  writer.log(Split::kEval, 10, 0.5, {{"f1", 62.5}, {"loss", std::numeric_limits<double>::infinity()}});
  writer.close();
  EXPECT_EQ(writer.event_path(), "");
  EXPECT_EQ(qlora::fsys::list_directory(run_dir), std::vector<std::string>{"metrics.jsonl"});
  EXPECT_EQ(
      qlora::read_file(writer.metrics_path()),
      "{\"step\":10,\"epoch\":0.5,\"split\":\"train\",\"wall_time\":1000.25,\"loss\":1.5,"
      "\"learning_rate\":0.0002}\n"
      "{\"step\":10,\"epoch\":0.5,\"split\":\"eval\",\"wall_time\":1001.5,\"f1\":62.5,\"loss\":null}\n");

  const auto records = qlora::train::read_metrics_jsonl(writer.metrics_path());
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].split, Split::kEval);
  EXPECT_EQ(records[1].wall_time, 1001.5);
  ASSERT_EQ(records[1].values.size(), 2u);
  EXPECT_EQ(records[1].values[0], (std::pair<std::string, double>{"f1", 62.5}));
  EXPECT_TRUE(std::isnan(records[1].values[1].second));
  EXPECT_EQ(records[0].values[1].second, 2e-4);
}

TEST(MetricsJsonl, EachRecordIsOnDiskBeforeLogReturns) {
  const std::string run_dir = make_temp_dir();
  MetricsWriter writer(run_dir);
  writer.log(Split::kTrain, 1, 0.0, {{"loss", 3.0}});
  // Read by path while the writer is still open, as a plotting script would.
  EXPECT_EQ(qlora::train::read_metrics_jsonl(writer.metrics_path()).size(), 1u);
  EXPECT_EQ(read_tfrecords(qlora::read_file(writer.event_path())).records.size(), 2u);
  writer.log(Split::kTrain, 2, 0.0, {{"loss", 2.0}});
  EXPECT_EQ(qlora::train::read_metrics_jsonl(writer.metrics_path()).size(), 2u);
}

TEST(MetricsJsonl, AKilledRunKeepsWhatItLogged) {
  const std::string run_dir = make_temp_dir();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // no destructor, no close(): SIGKILL right after logging
    MetricsWriter writer(run_dir);
    for (int step = 1; step <= 3; ++step) writer.log(Split::kTrain, step, 0.0, {{"loss", 1.0 / step}});
    ::raise(SIGKILL);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(qlora::train::read_metrics_jsonl(qlora::fsys::join(run_dir, "metrics.jsonl")).size(), 3u);
  std::string event_file;
  for (const auto& name : qlora::fsys::list_directory(run_dir)) {
    if (name.rfind("events.out.tfevents.", 0) == 0) event_file = name;
  }
  ASSERT_NE(event_file, "");
  EXPECT_EQ(read_tfrecords(qlora::read_file(qlora::fsys::join(run_dir, event_file))).records.size(), 4u);
}

TEST(MetricsJsonl, TornLastLineIsSkipped) {
  const std::string path = qlora::fsys::join(make_temp_dir(), "metrics.jsonl");
  const std::string good =
      "{\"step\":1,\"epoch\":0,\"split\":\"train\",\"wall_time\":5,\"loss\":2}\n"
      "{\"step\":2,\"epoch\":0,\"split\":\"train\",\"wall_time\":6,\"loss\":1}\n";
  write_text(path, good + "{\"step\":3,\"epoch\":0,\"sp");
  const auto records = qlora::train::read_metrics_jsonl(path);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].step, 2);
  write_text(path,
             good + "{\"step\":3,\"epoch\":0,\"split\":\"train\",\"wall_time\":7}");  // whole, no newline
  EXPECT_EQ(qlora::train::read_metrics_jsonl(path).size(), 3u);
}

void expect_error_at(const std::string& path, const std::string& where, const std::string& what) {
  try {
    qlora::train::read_metrics_jsonl(path);
    ADD_FAILURE() << "no error for " << where;
  } catch (const qlora::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path + ":" + where + ": "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
}

TEST(MetricsJsonl, CorruptLineElsewhereNamesFileAndLine) {
  const std::string path = qlora::fsys::join(make_temp_dir(), "metrics.jsonl");
  const std::string line = "{\"step\":1,\"epoch\":0,\"split\":\"train\",\"wall_time\":5,\"loss\":2}\n";
  write_text(path, line + "{\"step\":2,\"ep\n" + line);
  expect_error_at(path, "2", "malformed JSON");
  write_text(path, line + "{\"step\":2,\"ep\n");  // torn, but a newline follows: not from a kill
  expect_error_at(path, "2", "malformed JSON");
  write_text(path, line + line + "{\"step\":1.5,\"epoch\":0,\"split\":\"train\",\"wall_time\":5}\n");
  expect_error_at(path, "3", "'step' must be an integer");
  write_text(path, "{\"step\":1,\"epoch\":0,\"split\":\"test\",\"wall_time\":5}\n");
  expect_error_at(path, "1", "'split'");
  write_text(path, "{\"step\":1,\"epoch\":0,\"split\":\"eval\",\"wall_time\":5,\"f1\":\"high\"}\n");
  expect_error_at(path, "1", "metric 'f1'");
  write_text(path, "{\"step\":1,\"split\":\"eval\",\"wall_time\":5}\n");
  expect_error_at(path, "1", "missing key 'epoch'");
}

TEST(MetricsJsonl, ResumedRunCutsTornLineBeforeAppending) {
  const std::string run_dir = make_temp_dir();
  const std::string path = qlora::fsys::join(run_dir, "metrics.jsonl");
  const std::string good = "{\"step\":1,\"epoch\":0,\"split\":\"train\",\"wall_time\":5,\"loss\":2}\n";
  write_text(path, good + "{\"step\":2,\"epo");
  MetricsWriterOptions options;
  options.tensorboard = false;
  options.clock = fixed_clock({9.0});
  MetricsWriter writer(run_dir, options);
  writer.log(Split::kTrain, 2, 0.0, {{"loss", 1.0}});
  EXPECT_EQ(qlora::read_file(path),
            good + "{\"step\":2,\"epoch\":0.0,\"split\":\"train\",\"wall_time\":9.0,\"loss\":1.0}\n");
  EXPECT_EQ(qlora::train::read_metrics_jsonl(path).size(), 2u);
}

// ---- Writer errors and names ----

TEST(MetricsWriter, BadRecordsAreErrors) {
  MetricsWriterOptions options;
  options.tensorboard = false;
  MetricsWriter writer(make_temp_dir(), options);
  EXPECT_THROW(writer.log(Split::kTrain, 1, 0.0, {{"", 1.0}}), qlora::Error);
  EXPECT_THROW(writer.log(Split::kTrain, 1, 0.0, {{"train/loss", 1.0}}), qlora::Error);
  EXPECT_THROW(writer.log(Split::kTrain, 1, 0.0, {{"step", 1.0}}), qlora::Error);
  EXPECT_THROW(writer.log(Split::kTrain, 1, 0.0, {{"loss", 1.0}, {"loss", 2.0}}), qlora::Error);
  EXPECT_THROW(writer.log(Split::kTrain, -1, 0.0, {{"loss", 1.0}}), qlora::Error);
  writer.close();
  EXPECT_THROW(writer.log(Split::kTrain, 1, 0.0, {{"loss", 1.0}}), qlora::Error);
  EXPECT_TRUE(qlora::train::read_metrics_jsonl(writer.metrics_path()).empty());  // nothing half-written
}

TEST(MetricsWriter, RunDirThatCannotBeCreatedIsNamed) {
  const std::string blocker = qlora::fsys::join(make_temp_dir(), "not_a_folder");
  write_text(blocker, "x");
  const std::string run_dir = qlora::fsys::join(blocker, "run");
  try {
    MetricsWriter writer(run_dir);
    FAIL() << "no error";
  } catch (const qlora::Error& e) {
    EXPECT_NE(std::string(e.what()).find(blocker), std::string::npos) << e.what();
  }
}

TEST(MetricsWriter, DefaultEventFileNameIsTensorFlowsAndNeverReused) {
  const std::string run_dir = make_temp_dir();
  MetricsWriterOptions options;
  options.clock = fixed_clock({1767225600.9});
  MetricsWriter first(run_dir, options);
  options.clock = fixed_clock({1767225600.9});
  MetricsWriter second(run_dir, options);
  const std::string pid = std::to_string(::getpid());
  const std::regex pattern("events\\.out\\.tfevents\\.1767225600\\.[^./]+(\\.[^./]+)*\\." + pid +
                           "\\.([01])");
  std::smatch a, b;
  const std::string name_a = first.event_path().substr(run_dir.size() + 1);
  const std::string name_b = second.event_path().substr(run_dir.size() + 1);
  ASSERT_TRUE(std::regex_match(name_a, a, pattern)) << name_a;
  ASSERT_TRUE(std::regex_match(name_b, b, pattern)) << name_b;
  EXPECT_EQ(a[2], "0");
  EXPECT_EQ(b[2], "1");
}

TEST(MetricsWriter, ExistingEventFileIsNotOverwritten) {
  const std::string run_dir = make_temp_dir();
  write_text(qlora::fsys::join(run_dir, kFixtureEventName), "keep");
  MetricsWriterOptions options;
  options.event_file_name = kFixtureEventName;
  EXPECT_THROW((MetricsWriter{run_dir, options}), qlora::Error);
  EXPECT_EQ(qlora::read_file(qlora::fsys::join(run_dir, kFixtureEventName)), "keep");
}

}  // namespace

namespace {

// A run killed after step 7 resumes from its checkpoint at step 4: the records of steps 5 to 7 are cut,
// so that the resumed run's own records of those steps are the only ones in the file.
TEST(MetricsJsonl, ResumeCutsRecordsAfterTheCheckpointStep) {
  const std::string run_dir = make_temp_dir();
  MetricsWriterOptions options;
  options.tensorboard = false;
  {
    MetricsWriter first(run_dir, options);
    for (int64_t step = 1; step <= 7; ++step) {
      first.log(Split::kTrain, step, 0.1 * step, {{"loss", 1.0 / step}});
      if (step == 4) first.log(Split::kEval, 4, 0.4, {{"loss", 0.3}});  // the checkpoint's evaluation stays
    }
  }
  MetricsWriter resumed(run_dir, options);
  EXPECT_EQ(resumed.truncate_after_step(4), 3);  // steps 5, 6 and 7
  resumed.log(Split::kTrain, 5, 0.5, {{"loss", 0.2}});
  resumed.close();
  const auto records = qlora::train::read_metrics_jsonl(resumed.metrics_path());
  std::vector<int64_t> steps;
  for (const auto& r : records) steps.push_back(r.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2, 3, 4, 4, 5}));
  EXPECT_EQ(records[4].split, Split::kEval);
  EXPECT_EQ(records.back().values[0].second, 0.2);  // the resumed run's value
  MetricsWriter again(run_dir, options);
  EXPECT_EQ(again.truncate_after_step(5), 0);  // nothing after: the file is left as it is
}

}  // namespace
