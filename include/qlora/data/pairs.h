// Source/target text pairs (rewriting, seq2seq QA) -> pairs JSONL {"id","source","target"}
// (format: docs/DATA_FORMATS.md). Inputs: JSONL (or a JSON array) with configurable field
// names, or two parallel plain-text files with one segment per line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qlora/core/jsonl.h"
#include "qlora/data/record_io.h"

namespace qlora::data {

struct PairsOptions {
  // Either JSONL/JSON inputs...
  std::vector<std::string> inputs;
  std::string source_field = "source";
  std::string target_field = "target";
  // ...or two parallel text files (both set, and `inputs` empty). Line i of one pairs with line
  // i of the other; differing line counts are an Error.
  std::string source_text;
  std::string target_text;

  std::string output;         // pairs JSONL path, written atomically
  bool skip_invalid = false;  // as in InstructOptions: Error naming the place, or skip with a warning
  size_t max_warnings = 100;
};

struct PairsCounts {
  int64_t read = 0;     // records (or line pairs) read
  int64_t skipped = 0;  // invalid ones skipped (skip_invalid)
  int64_t written = 0;  // records in the output
};

struct PairsResult {
  PairsCounts counts;
  Warnings warnings;
  Json to_json() const;  // {"counts": {...}, "warnings": [...], "warnings_suppressed": N}
};

struct PairsConversion {
  std::vector<Json> records;
  PairsResult result;
};

// Converts without writing.
PairsConversion convert_pairs(const PairsOptions& options);

// convert_pairs, then writes options.output atomically. On an Error nothing is written.
PairsResult prepare_pairs(const PairsOptions& options);

}  // namespace qlora::data
