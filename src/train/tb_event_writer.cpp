// The protobuf fields are written by hand: the protobuf library would need TensorFlow's
// event.proto and summary.proto compiled into the build for the five fields used here.
//
// Fields used (tensorboard/compat/proto/event.proto and summary.proto), as key = field << 3 | wire:
//   Event.wall_time        = 1  double  wire 1 (I64, little-endian)  key 0x09
//   Event.step             = 2  int64   wire 0 (VARINT)              key 0x10
//   Event.file_version     = 3  string  wire 2 (LEN)   [oneof what]  key 0x1A
//   Event.summary          = 5  Summary wire 2 (LEN)   [oneof what]  key 0x2A
//   Summary.value          = 1  Value   wire 2 (LEN), repeated       key 0x0A
//   Summary.Value.tag      = 1  string  wire 2 (LEN)                 key 0x0A
//   Summary.Value.simple_value = 2 float wire 5 (I32, little-endian) [oneof value] key 0x15
// proto3 leaves out a non-oneof scalar equal to its default (0), and protobuf writes fields in
// number order; doing the same makes the bytes equal to protobuf's own serialisation, which
// tools/check_tb_events.py checks by re-serialising every event it reads.
#include "qlora/train/tb_event_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "qlora/core/error.h"
#include "qlora/core/fs.h"

namespace qlora::train {

namespace {

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? 0x82F63B78u : 0u);
    table[i] = crc;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();
static_assert(kCrc32cTable[1] == 0xF26B8303u, "CRC-32C table (reflected 0x82F63B78)");

void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void put_fixed(std::string& out, uint64_t bits, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
}

void put_len_field(std::string& out, uint8_t key, const std::string& bytes) {
  out.push_back(static_cast<char>(key));
  put_varint(out, bytes.size());
  out += bytes;
}

// Event fields 1 and 2, each left out when it holds the proto3 default.
std::string event_header(double wall_time, int64_t step) {
  std::string out;
  uint64_t wall_bits = 0;
  std::memcpy(&wall_bits, &wall_time, sizeof wall_bits);
  if (wall_bits != 0) {
    out.push_back(0x09);
    put_fixed(out, wall_bits, 8);
  }
  if (step != 0) {
    out.push_back(0x10);
    put_varint(out, static_cast<uint64_t>(step));  // negative int64: 10-byte two's complement
  }
  return out;
}

}  // namespace

uint32_t crc32c(const void* data, size_t size, uint32_t crc) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = kCrc32cTable[(crc ^ bytes[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
}

std::string tfrecord_frame(const std::string& payload) {
  std::string out;
  out.reserve(payload.size() + 16);
  put_fixed(out, payload.size(), 8);
  put_fixed(out, masked_crc32c(out.data(), 8), 4);
  out += payload;
  put_fixed(out, masked_crc32c(payload.data(), payload.size()), 4);
  return out;
}

std::string encode_file_version_event(double wall_time) {
  std::string out = event_header(wall_time, 0);
  put_len_field(out, 0x1A, "brain.Event:2");
  return out;
}

std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value) {
  std::string summary_value;
  if (!tag.empty()) put_len_field(summary_value, 0x0A, tag);
  uint32_t value_bits = 0;
  std::memcpy(&value_bits, &value, sizeof value_bits);
  summary_value.push_back(0x15);  // oneof member: written even when 0.0
  put_fixed(summary_value, value_bits, 4);

  std::string summary;
  put_len_field(summary, 0x0A, summary_value);

  std::string out = event_header(wall_time, step);
  put_len_field(out, 0x2A, summary);
  return out;
}

std::string tb_event_file_name(int64_t unix_time, const std::string& hostname, int64_t pid, int index) {
  return "events.out.tfevents." + std::to_string(unix_time) + "." + hostname + "." + std::to_string(pid) +
         "." + std::to_string(index);
}

TbEventWriter::TbEventWriter(std::string path, double wall_time) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(path_ + ": cannot create event file (" + std::strerror(errno) + ")");
  fsys::write_all(fd_, tfrecord_frame(encode_file_version_event(wall_time)), path_);
}

TbEventWriter::~TbEventWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void TbEventWriter::add_scalars(int64_t step, double wall_time, const std::vector<TbScalar>& scalars) {
  if (fd_ < 0) fail(path_ + ": event file already closed");
  std::string records;
  for (const auto& scalar : scalars) {
    if (scalar.tag.empty()) fail(path_ + ": a scalar needs a tag");
    records += tfrecord_frame(encode_scalar_event(wall_time, step, scalar.tag, scalar.value));
  }
  fsys::write_all(fd_, records, path_);
}

void TbEventWriter::close() {
  if (fd_ < 0) return;
  const int fd = fd_;
  fd_ = -1;
  const bool synced = ::fsync(fd) == 0;
  const int sync_errno = errno;
  if (::close(fd) != 0 || !synced) {
    fail(path_ + ": cannot flush event file (" + std::strerror(synced ? errno : sync_errno) + ")");
  }
}

}  // namespace qlora::train
