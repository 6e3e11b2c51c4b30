// SQuAD v1.1 / v2.0 JSON -> MRC JSONL, one record per question (format: docs/DATA_FORMATS.md).
// Every answer is checked against its context in code points after NFC normalisation; what
// happens to a bad one is the OffsetMode. Structural problems are always Errors naming the file
// and a JSON path such as data[3].paragraphs[0].qas[5].answers[0].answer_start.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qlora/core/jsonl.h"
#include "qlora/data/record_io.h"

namespace qlora::data {

// What to do with an answer whose answer_start does not point at its text.
enum class OffsetMode {
  drop,         // drop the answer with a warning; drop the question when no valid answer remains
  fix_offsets,  // move it to the occurrence of its text nearest to answer_start; drop if absent
  strict,       // Error naming the file, the question id, the expected text and what is there
};

// "drop" | "fix_offsets" | "strict" (also "fix-offsets"); anything else is an Error with a
// did-you-mean.
OffsetMode parse_offset_mode(const std::string& name);
const char* offset_mode_name(OffsetMode mode);

struct SquadToMrcOptions {
  std::vector<std::string> inputs;  // SQuAD JSON files, converted in order into one output
  std::string output;               // MRC JSONL path, written atomically
  OffsetMode offset_mode = OffsetMode::drop;
  // A missing, empty or repeated question id is an Error unless this is set; then it is
  // replaced by a unique generated id (docs/DATA_FORMATS.md) with a warning.
  bool repair_ids = false;
  // Keep v2 plausible_answers (checked like answers) in the record's "plausible_answers" field.
  bool keep_plausible_answers = true;
  size_t max_warnings = 100;  // warnings kept in the result; the rest are only counted
};

// Counts over all inputs. Answer counts cover the "answers" lists of answerable questions;
// plausible answers of impossible questions are not counted here.
struct SquadCounts {
  int64_t articles = 0;            // data[] entries
  int64_t paragraphs = 0;          // paragraphs[] entries
  int64_t questions = 0;           // qas[] entries read
  int64_t answerable = 0;          // questions without is_impossible: true
  int64_t impossible = 0;          // questions with is_impossible: true
  int64_t answers_checked = 0;     // answers validated against their context
  int64_t mismatched_offsets = 0;  // answers whose text is not at answer_start (after NFC mapping)
  int64_t empty_answers = 0;       // answers with empty text (never valid)
  int64_t fixed = 0;               // mismatched answers relocated (fix_offsets)
  int64_t answers_dropped = 0;     // answers removed (mismatched and not fixed, or empty)
  int64_t records_dropped = 0;     // answerable questions left with no valid answer
  int64_t ids_repaired = 0;        // written records whose id was missing, empty or repeated (repair_ids)
  int64_t written = 0;             // records in the output
};

struct SquadToMrcResult {
  SquadCounts counts;
  Warnings warnings;
  // {"counts": {...}, "warnings": [...], "warnings_suppressed": N} for the CLI.
  Json to_json() const;
};

// Converts without writing: the records the output would hold, and the report.
struct MrcConversion {
  std::vector<Json> records;
  SquadToMrcResult result;
};
MrcConversion convert_squad(const SquadToMrcOptions& options);

// convert_squad, then writes options.output atomically. On an Error nothing is written.
SquadToMrcResult squad_to_mrc(const SquadToMrcOptions& options);

}  // namespace qlora::data
