// The torch-facing safetensors reader: mmap, validate (safetensors_header.cpp), alias as tensors.
#include "qlora/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "qlora/core/error.h"
#include "qlora/core/suggest.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors data is little-endian; add byte swapping");

namespace qlora {

namespace {

struct TypePair {
  SafetensorsDtype dtype;
  at::ScalarType type;
};

constexpr TypePair kTypes[] = {
    {SafetensorsDtype::BOOL, at::kBool},
    {SafetensorsDtype::U8, at::kByte},
    {SafetensorsDtype::I8, at::kChar},
    {SafetensorsDtype::F8_E5M2, at::ScalarType::Float8_e5m2},
    {SafetensorsDtype::F8_E4M3, at::ScalarType::Float8_e4m3fn},
    {SafetensorsDtype::F8_E8M0, at::ScalarType::Float8_e8m0fnu},
    {SafetensorsDtype::F8_E4M3FNUZ, at::ScalarType::Float8_e4m3fnuz},
    {SafetensorsDtype::F8_E5M2FNUZ, at::ScalarType::Float8_e5m2fnuz},
    {SafetensorsDtype::I16, at::kShort},
    {SafetensorsDtype::U16, at::ScalarType::UInt16},
    {SafetensorsDtype::F16, at::kHalf},
    {SafetensorsDtype::BF16, at::kBFloat16},
    {SafetensorsDtype::I32, at::kInt},
    {SafetensorsDtype::U32, at::ScalarType::UInt32},
    {SafetensorsDtype::F32, at::kFloat},
    {SafetensorsDtype::C64, at::kComplexFloat},
    {SafetensorsDtype::F64, at::kDouble},
    {SafetensorsDtype::I64, at::kLong},
    {SafetensorsDtype::U64, at::ScalarType::UInt64},
};

std::string errno_text() { return std::strerror(errno); }

}  // namespace

at::ScalarType to_scalar_type(SafetensorsDtype dtype) {
  for (const auto& pair : kTypes) {
    if (pair.dtype == dtype) return pair.type;
  }
  fail("unhandled safetensors dtype " + std::string(safetensors_dtype_name(dtype)));
}

SafetensorsDtype to_safetensors_dtype(at::ScalarType type, const std::string& what) {
  for (const auto& pair : kTypes) {
    if (pair.type == type) return pair.dtype;
  }
  fail(what + ": dtype " + std::string(c10::toString(type)) + " cannot be stored in safetensors");
}

// Owns the bytes of a file: a private mapping or an in-memory string.
struct SafetensorsFile::Buffer {
  const uint8_t* data = nullptr;
  size_t size = 0;
  void* mapping = nullptr;  // non-null when mmapped
  std::string owned;

  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() {
    if (mapping != nullptr) ::munmap(mapping, size);
  }
};

SafetensorsFile::SafetensorsFile(std::string path, std::shared_ptr<const Buffer> buffer)
    : path_(std::move(path)),
      buffer_(std::move(buffer)),
      header_(parse_safetensors_header(buffer_->data, buffer_->size, path_)) {}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path + ": cannot open safetensors file (" + errno_text() + ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string why = errno_text();
    ::close(fd);
    fail(path + ": cannot stat file (" + why + ")");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path + ": not a regular file");
  }
  auto buffer = std::make_shared<Buffer>();
  buffer->size = static_cast<size_t>(st.st_size);
  if (buffer->size > 0) {  // mmap of length 0 fails; the header parser reports the short file
    // Copy-on-write, so an in-place op on a returned tensor cannot fault or touch the file.
    // MAP_NORESERVE: do not charge the whole file against overcommit for pages never written.
    void* mapping = ::mmap(nullptr, buffer->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
    if (mapping == MAP_FAILED) {
      const std::string why = errno_text();
      ::close(fd);
      fail(path + ": cannot mmap file (" + why + ")");
    }
    buffer->mapping = mapping;
    buffer->data = static_cast<const uint8_t*>(mapping);
  }
  ::close(fd);  // the mapping keeps the file alive
  static const uint8_t kEmpty = 0;
  if (buffer->data == nullptr) buffer->data = &kEmpty;
  return SafetensorsFile(path, std::move(buffer));
}

SafetensorsFile SafetensorsFile::from_bytes(std::string bytes, const std::string& source) {
  auto buffer = std::make_shared<Buffer>();
  buffer->owned = std::move(bytes);
  buffer->data = reinterpret_cast<const uint8_t*>(buffer->owned.data());
  buffer->size = buffer->owned.size();
  return SafetensorsFile(source, std::move(buffer));
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> names;
  names.reserve(entries().size());
  for (const auto& e : entries()) names.push_back(e.name);
  std::sort(names.begin(), names.end());
  return names;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  const SafetensorsEntry* found = header_.find(name);
  if (found == nullptr) fail(path_ + ": no tensor '" + name + "'" + did_you_mean(name, names()));
  return *found;
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  const auto options = at::TensorOptions().dtype(to_scalar_type(e.dtype)).device(at::kCPU);
  if (e.nbytes() == 0) return at::empty(e.shape, options);
  // The mapping is writable (copy-on-write), so dropping const here cannot corrupt the file.
  auto* data = const_cast<uint8_t*>(buffer_->data + header_.data_start + e.begin);
  if (reinterpret_cast<uintptr_t>(data) % safetensors_dtype_size(e.dtype) != 0) {
    // Misaligned (a file written by a tool that does not sort by alignment): copy out.
    at::Tensor copy = at::empty(e.shape, options);
    std::memcpy(copy.data_ptr(), data, e.nbytes());
    return copy;
  }
  std::shared_ptr<const Buffer> keep_alive = buffer_;
  return at::from_blob(
      data, e.shape, [keep_alive](void*) mutable { keep_alive.reset(); }, options);
}

}  // namespace qlora
