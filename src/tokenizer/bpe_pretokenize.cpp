// Scanners for the known byte-level BPE pre-tokenizer regexes. Each alternative is tried in order at
// the current position (Oniguruma is leftmost-first, not longest); greedy quantifiers take the longest
// run and backtrack only where a later element (a lookahead, a required [\r\n]) forces it.
#include "bpe_pretokenize.h"

#include <utf8proc.h>

namespace qlora::tokenizer_detail {

namespace {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Some tokenizer.json files spell the case-insensitive contractions out as character classes.
const char* const kSpelledContractions = R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]))";
const char* const kCaselessContractions = R"((?i:'s|'t|'re|'ve|'m|'ll|'d))";

bool is_letter(char32_t c) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT ||
         cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_LO;
}

bool is_number(char32_t c) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

// [^\s\p{L}\p{N}]
bool is_other(char32_t c) { return !is_white_space(c) && !is_letter(c) && !is_number(c); }

bool is_newline(char32_t c) { return c == '\r' || c == '\n'; }

// Under (?i) Oniguruma folds case: 'S' and U+017F LATIN SMALL LETTER LONG S both match 's'.
bool fold_equals(char32_t c, char ascii_lower, bool caseless) {
  if (c == static_cast<char32_t>(ascii_lower)) return true;
  if (!caseless) return false;
  if (c == static_cast<char32_t>(ascii_lower - 'a' + 'A')) return true;
  return ascii_lower == 's' && c == 0x17F;
}

class Scanner {
 public:
  Scanner(const std::vector<char32_t>& text) : t_(text), n_(text.size()) {}

  // Length of 's|'t|'re|'ve|'m|'ll|'d at i, 0 when none.
  size_t contraction(size_t i, bool caseless) const {
    if (i + 1 >= n_ || t_[i] != '\'') return 0;
    const char32_t a = t_[i + 1];
    for (char one : {'s', 't', 'm', 'd'}) {
      if (fold_equals(a, one, caseless)) return 2;
    }
    if (i + 2 >= n_) return 0;
    const char32_t b = t_[i + 2];
    for (const char* two : {"re", "ve", "ll"}) {
      if (fold_equals(a, two[0], caseless) && fold_equals(b, two[1], caseless)) return 3;
    }
    return 0;
  }

  template <typename Pred>
  size_t run(size_t i, Pred pred) const {
    size_t j = i;
    while (j < n_ && pred(t_[j])) ++j;
    return j;
  }

  // ` ?X+` where X is a class: end of the match at i, or i when none.
  template <typename Pred>
  size_t optional_space_then_run(size_t i, Pred pred) const {
    if (t_[i] == ' ' && i + 1 < n_ && pred(t_[i + 1])) return run(i + 1, pred);
    if (pred(t_[i])) return run(i, pred);
    return i;
  }

  // \s+(?!\S): the whitespace run, minus its last char when a non-space follows; i when none.
  size_t spaces_not_before_text(size_t i) const {
    const size_t j = run(i, is_white_space);
    if (j == i) return i;
    if (j == n_) return j;
    return j - i >= 2 ? j - 1 : i;
  }

  size_t gpt2(size_t i) const {
    if (size_t len = contraction(i, false)) return i + len;
    for (auto pred : {is_letter, is_number, is_other}) {
      const size_t e = optional_space_then_run(i, pred);
      if (e > i) return e;
    }
    if (size_t e = spaces_not_before_text(i); e > i) return e;
    return run(i, is_white_space);
  }

  size_t qwen2(size_t i, size_t max_digits) const {
    if (size_t len = contraction(i, true)) return i + len;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (is_letter(t_[i])) return run(i, is_letter);
    if (!is_newline(t_[i]) && !is_number(t_[i]) && i + 1 < n_ && is_letter(t_[i + 1]))
      return run(i + 1, is_letter);
    // \p{N}{1,max_digits}
    if (is_number(t_[i])) {
      size_t j = i;
      while (j < n_ && j - i < max_digits && is_number(t_[j])) ++j;
      return j;
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    if (size_t e = optional_space_then_run(i, is_other); e > i) return run(e, is_newline);
    // \s*[\r\n]+: \s* backs off to the last newline of the whitespace run.
    const size_t j = run(i, is_white_space);
    for (size_t k = j; k > i; --k) {
      if (is_newline(t_[k - 1])) return k;
    }
    if (size_t e = spaces_not_before_text(i); e > i) return e;
    return j;
  }

 private:
  const std::vector<char32_t>& t_;
  size_t n_;
};

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) {
    s.replace(pos, from.size(), to);
  }
}

}  // namespace

bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

bool known_split_regex(const std::string& pattern, SplitRegex& out) {
  std::string p = pattern;
  replace_all(p, kSpelledContractions, kCaselessContractions);
  if (p == kGpt2Pattern) {
    out = SplitRegex::kGpt2;
  } else if (p == kQwen2Pattern) {
    out = SplitRegex::kQwen2;
  } else if (p == kLlama3Pattern) {
    out = SplitRegex::kLlama3;
  } else {
    return false;
  }
  return true;
}

std::vector<Span> regex_matches(SplitRegex re, const std::vector<char32_t>& text) {
  const Scanner scan(text);
  std::vector<Span> spans;
  for (size_t i = 0; i < text.size();) {
    size_t end = i;
    switch (re) {
      case SplitRegex::kGpt2:
        end = scan.gpt2(i);
        break;
      case SplitRegex::kQwen2:
        end = scan.qwen2(i, 1);
        break;
      case SplitRegex::kLlama3:
        end = scan.qwen2(i, 3);
        break;
    }
    // Every code point is \s, \p{L}, \p{N} or the rest, so one alternative always matches; the guard
    // only keeps a bug from looping.
    if (end == i) {
      ++i;
      continue;
    }
    spans.emplace_back(i, end);
    i = end;
  }
  return spans;
}

}  // namespace qlora::tokenizer_detail
