// File-system operations on POSIX calls, for every library. Not std::filesystem: libtorch.so
// exports its own copies of std::filesystem functions (remove_all, create_directories, status,
// remove, copy_file, ...), which win symbol resolution in every torch-linked binary and are not
// safe to call (remove_all jumps to a null pointer).
#pragma once

#include <string>
#include <vector>

namespace qlora::fsys {

bool is_directory(const std::string& path);
bool exists(const std::string& path);
// mkdir -p; throws Error naming the path.
void create_directories(const std::string& path);
// File names in `dir` (no "." or ".."); throws Error naming the folder.
std::vector<std::string> list_directory(const std::string& dir);
// Removes a file; a missing file is not an error.
void remove_file(const std::string& path);
// Writes all of `bytes` to `fd` (retrying short writes and EINTR); Error names `path`.
void write_all(int fd, const std::string& bytes, const std::string& path);
// rm -rf: removes a file or a folder tree; a missing path is not an error.
void remove_all(const std::string& path);
// rename(2) with an Error naming both paths.
void rename_path(const std::string& from, const std::string& to);
// True when both paths name the same existing file (same device and inode).
bool same_file(const std::string& a, const std::string& b);
// "a/b", without doubling a trailing slash of `a`.
std::string join(const std::string& a, const std::string& b);
// The folder part of a path: "a/b/c" -> "a/b", "c" -> ".", "/c" -> "/".
std::string parent(const std::string& path);
// Components split on '/', empty ones dropped: "a//b/../c" -> {"a", "b", "..", "c"}.
std::vector<std::string> components(const std::string& path);

}  // namespace qlora::fsys
