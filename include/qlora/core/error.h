// The one exception type of qlora. Every user-facing failure (bad file, bad key, bad value) is
// an Error that names where it happened; main() prints it once and exits non-zero.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace qlora {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Builds "FILE:LINE: message", "FILE: message" (line < 0), or just the message (file empty).
std::string located(const std::string& file, int64_t line, const std::string& message);

// Throws Error(located(file, line, message)).
[[noreturn]] void fail_at(const std::string& file, int64_t line, const std::string& message);

// Throws Error(message).
[[noreturn]] void fail(const std::string& message);

}  // namespace qlora
