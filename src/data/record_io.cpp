#include "qlora/data/record_io.h"

#include <fstream>

#include "qlora/core/error.h"
#include "qlora/core/unicode.h"

namespace qlora::data {

namespace {

// Up to `n` leading bytes of a file; "" when it cannot be opened (the reader that follows reports that).
std::string read_prefix(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string head(n, '\0');
  in.read(head.data(), static_cast<std::streamsize>(n));
  head.resize(in ? n : static_cast<size_t>(in.gcount()));
  return head;
}

}  // namespace

std::string RecordPlace::describe() const {
  if (line >= 0) return file + ":" + std::to_string(line);
  if (index >= 0) return file + ": [" + std::to_string(index) + "]";
  return file;
}

void fail_record(const RecordPlace& place, const std::string& message) {
  fail(place.describe() + ": " + message);
}

void for_each_record(const std::string& path,
                     const std::function<void(const Json& record, const RecordPlace& place)>& visit) {
  // Sniff the first non-blank byte; a JSONL file never starts with '['.
  const std::string head = read_prefix(path, 4096);
  const auto first = head.find_first_not_of(" \t\r\n\xef\xbb\xbf");
  if (first != std::string::npos && head[first] == '[') {
    const Json doc = read_json_file(path);
    RecordPlace place{path, -1, 0};
    for (const auto& record : doc) {
      if (!record.is_object()) {
        fail_record(place, "expected a JSON object, got " + std::string(record.type_name()));
      }
      visit(record, place);
      ++place.index;
    }
    return;
  }
  for_each_jsonl(path, [&](const Json& record, int64_t line) { visit(record, RecordPlace{path, line, -1}); });
}

void Warnings::add(std::string message) {
  if (messages_.size() < limit_) {
    messages_.push_back(std::move(message));
  } else {
    ++suppressed_;
  }
}

void Warnings::append_to(Json& out) const {
  out["warnings"] = messages_;
  out["warnings_suppressed"] = suppressed_;
}

TextField text_field(const Json& record, const std::string& key, bool required, bool allow_blank) {
  const auto it = record.find(key);
  if (it == record.end() || it->is_null()) {
    if (required) return {"", "missing required field \"" + key + "\""};
    return {"", ""};
  }
  if (!it->is_string()) {
    return {"", "field \"" + key + "\" must be a string, got " + it->type_name() + " " + preview(*it)};
  }
  std::string text = nfc(it->get<std::string>());
  if (!allow_blank && text.find_first_not_of(" \t\r\n") == std::string::npos) {
    return {"", "field \"" + key + "\" is empty"};
  }
  return {std::move(text), ""};
}

std::string record_id(const Json& record, std::string& problem) {
  const auto it = record.find("id");
  if (it == record.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return it->dump();
  problem = std::string("field \"id\" must be a string or an integer, got ") + it->type_name();
  return "";
}

std::string IdSet::unique(const std::string& base) {
  std::string id = base;
  for (int n = 2; !insert(id); ++n) id = base + "#" + std::to_string(n);
  return id;
}

void reject_record(const RecordPlace& place, const std::string& problem, bool skip_invalid,
                   Warnings& warnings, int64_t& skipped) {
  if (!skip_invalid) fail_record(place, problem);
  ++skipped;
  warnings.add(place.describe() + ": " + problem + "; record skipped");
}

std::string file_stem(const std::string& path) {
  const auto slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const auto dot = name.find('.');
  if (dot != std::string::npos && dot > 0) name.resize(dot);
  return name;
}

std::string preview(const Json& value) {
  std::string text = value.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
  constexpr size_t kMax = 80;
  if (text.size() <= kMax) return text;
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return text.substr(0, cut) + "...";
}

}  // namespace qlora::data
