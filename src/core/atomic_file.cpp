#include "qlora/core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "qlora/core/error.h"

namespace qlora {

namespace {

std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

void fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) return;  // Best effort: some filesystems refuse to open directories.
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

AtomicFile::AtomicFile(std::string path, bool binary)
    : path_(std::move(path)), tmp_path_(path_ + ".tmp." + std::to_string(::getpid())) {
  out_.open(tmp_path_,
            binary ? std::ios::out | std::ios::binary | std::ios::trunc : std::ios::out | std::ios::trunc);
  if (!out_) fail(path_ + ": cannot create output file (" + std::strerror(errno) + ")");
}

AtomicFile::~AtomicFile() {
  if (!committed_) {
    out_.close();
    std::remove(tmp_path_.c_str());
  }
}

void AtomicFile::commit() {
  out_.flush();
  if (!out_) fail(path_ + ": write failed");
  out_.close();
  fsync_path(tmp_path_, O_RDONLY);
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    fail(path_ + ": cannot rename temporary file into place (" + std::strerror(errno) + ")");
  }
  committed_ = true;
  fsync_path(parent_dir(path_), O_RDONLY | O_DIRECTORY);
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  AtomicFile file(path, /*binary=*/true);
  file.stream().write(contents.data(), static_cast<std::streamsize>(contents.size()));
  file.commit();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path + ": cannot open file (" + std::strerror(errno) + ")");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) fail(path + ": read failed");
  return buffer.str();
}

}  // namespace qlora
