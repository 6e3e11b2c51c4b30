// Internal: the pre-tokenizer regexes of byte-level BPE tokenizers, as hand-written scanners.
// tokenizers runs these patterns through Oniguruma; we do not ship a regex engine, we recognise the
// few patterns real tokenizers use and scan them with the same leftmost-first, backtracking semantics.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace qlora::tokenizer_detail {

enum class SplitRegex {
  kGpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kQwen2,   // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,  // kQwen2 with \p{N}{1,3}
};

// The pattern tokenizers' ByteLevel pre-tokenizer uses when use_regex is true.
constexpr SplitRegex kByteLevelRegex = SplitRegex::kGpt2;

// Which known pattern `pattern` is (after normalising equivalent spellings); false when unknown.
bool known_split_regex(const std::string& pattern, SplitRegex& out);

using Span = std::pair<size_t, size_t>;  // [begin, end) in code points

// All non-overlapping matches of `re` in `text`, left to right (Oniguruma find_iter).
std::vector<Span> regex_matches(SplitRegex re, const std::vector<char32_t>& text);

// Unicode White_Space: what \s means in Oniguruma and char::is_whitespace in Rust.
bool is_white_space(char32_t c);

}  // namespace qlora::tokenizer_detail
