// Deterministic, group-aware train/valid split of a JSONL file (docs/DATA_FORMATS.md, "split").
// Records are copied byte for byte, in input order; only their assignment is random.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "qlora/core/jsonl.h"
#include "qlora/data/record_io.h"

namespace qlora::data {

struct SplitOptions {
  std::string input;         // JSONL; never modified
  std::string train_output;  // written atomically
  std::string valid_output;  // written atomically
  double valid_ratio = 0.1;  // fraction of ALL records wanted in valid, in [0, 1]
  uint64_t seed = 42;        // same seed + same input -> same output bytes
  // Records with equal values of this field are one group and never straddle train and valid.
  // "auto": "context" when the first record has a "context" field (MRC data), else no grouping;
  // "none": no grouping; anything else: that field, which every record must have.
  std::string group_field = "auto";
  // "FIELD=VALUE": only records whose FIELD equals VALUE may go to valid (a string field is
  // compared as text, any other JSON value by its compact JSON form, e.g. is_impossible=false).
  // "" = every record is eligible.
  std::string valid_filter;
};

struct SplitResult {
  int64_t records = 0;       // records read
  int64_t train = 0;         // records written to train_output
  int64_t valid = 0;         // records written to valid_output
  int64_t target_valid = 0;  // valid_target(valid_ratio, records)
  int64_t groups = 0;        // groups (each record is its own group when not grouping)
  int64_t valid_groups = 0;  // groups placed in valid
  int64_t eligible = 0;      // records allowed in valid (filter passed by every record of their group)
  std::string group_field;   // the field actually grouped by; "" when not grouping
  Warnings warnings;
  Json to_json() const;  // {"counts": {...}, "group_field": ..., "warnings": [...], ...}
};

SplitResult split(const SplitOptions& options);

// Records wanted in valid: ceil(ratio * n), as sklearn's train_test_split (15466 records at 0.1
// -> 1547). A product within 1e-9 of an integer counts as that integer, so 0.55 * 100 gives 55,
// not the 56 that ceil(55.00000000000001) would.
int64_t valid_target(double ratio, int64_t n);

// A permutation of [0, n): Fisher-Yates (i from n-1 down to 1, swap a[i] with a[j], j uniform
// in [0, i]) driven by std::mt19937_64(seed); j = x mod (i+1) for the first draw x with
// x >= 2^64 mod (i+1). Fully specified, so identical on every standard library.
std::vector<size_t> shuffled_indices(size_t n, uint64_t seed);

}  // namespace qlora::data
