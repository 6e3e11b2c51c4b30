// Shared plumbing of the data-preparation tools: where a record came from (for messages that
// name file and place), reading JSON-array-or-JSONL inputs, and a capped warning list that the
// CLI prints as JSON.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include "qlora/core/jsonl.h"

namespace qlora::data {

// The place of one input record: a 1-based JSONL line or a 0-based JSON array index.
struct RecordPlace {
  std::string file;
  int64_t line = -1;   // JSONL line number (1-based), or -1
  int64_t index = -1;  // JSON array index (0-based), or -1

  // "FILE:LINE" for JSONL, "FILE: [INDEX]" for a JSON array.
  std::string describe() const;
  // The line for JSONL, the index for a JSON array: what generated ids are numbered by.
  int64_t number() const { return line >= 0 ? line : index; }
};

// Throws Error("<place>: message").
[[noreturn]] void fail_record(const RecordPlace& place, const std::string& message);

// Calls visit(record, place) for every record of `path`. A file whose first non-blank byte is
// '[' is read as one JSON array of objects; anything else as JSONL. A non-object element is an
// Error naming the place.
void for_each_record(const std::string& path,
                     const std::function<void(const Json& record, const RecordPlace& place)>& visit);

// Warnings collected while converting. Only the first `limit` messages are kept so that a bad
// 100k-record file does not print 100k lines; `suppressed` counts the rest.
class Warnings {
 public:
  explicit Warnings(size_t limit = 100) : limit_(limit) {}
  void add(std::string message);
  const std::vector<std::string>& messages() const { return messages_; }
  size_t suppressed() const { return suppressed_; }
  size_t total() const { return messages_.size() + suppressed_; }
  // {"warnings": [...], "warnings_suppressed": N} fields, merged into `out`.
  void append_to(Json& out) const;

 private:
  size_t limit_;
  std::vector<std::string> messages_;
  size_t suppressed_ = 0;
};

// A text field read from a record: NFC text, or why the record is invalid.
struct TextField {
  std::string text;
  std::string problem;  // "" when valid
  bool ok() const { return problem.empty(); }
};

// record[key] as NFC text. Absent or null is a problem when `required` (else ""), a non-string
// is a problem, and so is a blank string unless `allow_blank`.
TextField text_field(const Json& record, const std::string& key, bool required, bool allow_blank);

// The record's own "id" (a string or an integer) or "" when it has none; sets `problem` when
// the id has another type.
std::string record_id(const Json& record, std::string& problem);

// Ids seen so far in one output; hands out unique ones.
class IdSet {
 public:
  // True (and remembers it) when `id` is new.
  bool insert(const std::string& id) { return seen_.insert(id).second; }
  // `base` if unused, else base#2, base#3, ...; the result is remembered.
  std::string unique(const std::string& base);

 private:
  std::unordered_set<std::string> seen_;
};

// The one policy for an invalid record: an Error naming its place, or (skip_invalid) a warning
// and one more skipped record.
void reject_record(const RecordPlace& place, const std::string& problem, bool skip_invalid,
                   Warnings& warnings, int64_t& skipped);

// "dir/train_wiki.json" -> "train_wiki": the prefix of generated ids.
std::string file_stem(const std::string& path);

// A JSON value for messages: strings quoted, long values cut to ~80 bytes on a UTF-8 boundary.
std::string preview(const Json& value);

}  // namespace qlora::data
