#include "qlora/core/jsonl.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"

namespace qlora {

void for_each_jsonl(const std::string& path,
                    const std::function<void(const Json& record, int64_t line)>& visit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path + ": cannot open file (" + std::strerror(errno) + ")");
  std::string text;
  int64_t line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    Json record;
    try {
      record = Json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      fail_at(path, line, std::string("malformed JSON: ") + e.what());
    }
    if (!record.is_object())
      fail_at(path, line, "expected a JSON object, got " + std::string(record.type_name()));
    visit(record, line);
  }
  if (in.bad()) fail(path + ": read failed");
}

Json read_json_file(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is the 1-based byte position; turn it into line/column for the user.
    int64_t line = 1, column = 1;
    for (size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    fail_at(path, line, "malformed JSON at column " + std::to_string(column) + ": " + e.what());
  }
}

void write_jsonl_atomic(const std::string& path, const std::vector<Json>& records) {
  AtomicFile file(path);
  for (const auto& record : records) {
    file.stream() << record.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::strict) << '\n';
  }
  file.commit();
}

}  // namespace qlora
