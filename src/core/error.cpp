#include "qlora/core/error.h"

namespace qlora {

std::string located(const std::string& file, int64_t line, const std::string& message) {
  if (file.empty()) return message;
  if (line < 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ": " + message;
}

void fail_at(const std::string& file, int64_t line, const std::string& message) {
  throw Error(located(file, line, message));
}

void fail(const std::string& message) { throw Error(message); }

}  // namespace qlora
