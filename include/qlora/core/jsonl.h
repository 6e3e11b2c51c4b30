// JSON Lines reading with errors that name the file and line.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qlora {

using Json = nlohmann::ordered_json;

// Calls `visit(record, line_number)` for every non-blank line of a JSONL file. A line that is
// not a JSON object gives Error "FILE:LINE: ...". Line numbers are 1-based.
void for_each_jsonl(const std::string& path,
                    const std::function<void(const Json& record, int64_t line)>& visit);

// Reads a whole JSON document; errors name the file, line and column.
Json read_json_file(const std::string& path);

// Writes records as JSONL (UTF-8, no ASCII escaping), atomically.
void write_jsonl_atomic(const std::string& path, const std::vector<Json>& records);

}  // namespace qlora
