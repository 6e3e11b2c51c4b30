// TensorBoard event files written without TensorFlow or protobuf: TFRecord framing around
// hand-encoded tensorflow.Event messages, scalars only. TensorBoard's own reader (and its Rust
// data server) check both CRCs of every record, so the framing here must be exact; the bytes are
// pinned by tests/fixtures/train/, which real TensorBoard read (tools/check_tb_events.py).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qlora::train {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, as in iSCSI / RFC 3720).
// crc32c("123456789") == 0xE3069283. Continue a running checksum by passing the previous value.
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);

// TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xA282EAD8. Masking keeps a CRC of data
// that itself holds CRCs from being trivially zero.
uint32_t masked_crc32c(const void* data, size_t size);

// One TFRecord: uint64 length (little-endian), masked CRC of those 8 bytes, the payload, masked
// CRC of the payload.
std::string tfrecord_frame(const std::string& payload);

// Serialised tensorflow.Event messages, byte for byte what protobuf itself would write (fields
// equal to their proto3 default are left out; field order by number).
std::string encode_file_version_event(double wall_time);  // file_version "brain.Event:2"
std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value);

// One scalar of a TensorBoard chart: tag such as "train/loss".
struct TbScalar {
  std::string tag;
  float value = 0.0f;
};

// Appends events to one event file. Each add_scalars() call is one write(2) of whole records,
// so a killed process leaves at most one torn record at the end, which TensorBoard's readers
// treat as "not written yet" and skip.
class TbEventWriter {
 public:
  // Creates `path` (it must not exist yet) and writes the file_version event stamped `wall_time`.
  // Throws Error naming the path.
  TbEventWriter(std::string path, double wall_time);
  ~TbEventWriter();
  TbEventWriter(const TbEventWriter&) = delete;
  TbEventWriter& operator=(const TbEventWriter&) = delete;

  // One Event per scalar, all with the same wall time and step.
  void add_scalars(int64_t step, double wall_time, const std::vector<TbScalar>& scalars);
  // fsyncs and closes; further add_scalars() calls are errors. The destructor closes quietly.
  void close();

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// "events.out.tfevents.<unix_time>.<hostname>.<pid>.<index>", TensorFlow's naming, which
// TensorBoard uses to find event files in a run folder.
std::string tb_event_file_name(int64_t unix_time, const std::string& hostname, int64_t pid, int index = 0);

}  // namespace qlora::train
