// Internal: a byte-level BPE tokenizer as read from tokenizer.json (or GPT-2's vocab.json + merges.txt)
// and the transformers config files beside it. Only the components byte-level BPE tokenizers use are
// represented; anything else is rejected when reading, with the file and JSON path in the message.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "bpe_pretokenize.h"
#include "qlora/tokenizer/tokenizer.h"

namespace qlora::tokenizer_detail {

struct BpeAddedToken {
  std::string content;
  int64_t id = -1;
  bool special = false;
  bool lstrip = false;      // the match swallows whitespace on its left
  bool rstrip = false;      // ... and on its right
  bool normalized = false;  // matched in the normalized text instead of the raw text
};

// One pre-tokenizer step, applied to every piece the previous steps produced.
struct PreTokenizeStep {
  enum class Kind { kSplit, kByteLevel } kind = Kind::kByteLevel;
  // kSplit: a known regex or a literal string; Isolated keeps matches as pieces, Removed drops them.
  bool literal = false;
  std::string literal_text;
  SplitRegex regex = SplitRegex::kGpt2;
  bool removed = false;
  bool invert = false;
  // kByteLevel
  bool add_prefix_space = false;
  bool use_regex = true;
};

struct TemplatePiece {
  bool is_sequence = false;
  int sequence = 0;          // 0 = $A, 1 = $B
  std::vector<int64_t> ids;  // special token ids (SpecialToken pieces)
  int64_t type_id = 0;
};

struct PostProcessorSpec {
  enum class Kind { kNone, kRoberta, kTemplate } kind = Kind::kNone;  // which specials are added
  bool trim_offsets = false;                // ByteLevel / Roberta: drop leading/trailing spaces from offsets
  bool add_prefix_space = false;            // ... except the prefix space the pre-tokenizer added
  int64_t cls = -1, sep = -1;               // Roberta
  std::vector<TemplatePiece> single, pair;  // Template
};

struct BpeSpec {
  std::string source;  // the file the tokenizer came from, for messages
  std::unordered_map<std::string, int64_t> vocab;
  // (left id << 32 | right id) -> (rank, merged id)
  std::unordered_map<uint64_t, std::pair<int32_t, int64_t>> merges;
  bool ignore_merges = false;
  int64_t unk_id = -1;
  bool nfc = false;
  std::vector<PreTokenizeStep> pre_tokenizer;
  PostProcessorSpec post;
  std::vector<BpeAddedToken> added;
  SpecialTokenIds special;
  bool clean_up_tokenization_spaces = false;  // effective: transformers 5 skips it for BPE unless forced
};

inline uint64_t merge_key(int64_t left, int64_t right) {
  return (static_cast<uint64_t>(left) << 32) | static_cast<uint64_t>(right);
}

// Reads `model_dir`: tokenizer.json when present, else vocab.json + merges.txt (GPT-2 defaults), plus
// tokenizer_config.json / special_tokens_map.json for the special token ids and decode options.
BpeSpec read_bpe_spec(const std::string& model_dir);

}  // namespace qlora::tokenizer_detail
