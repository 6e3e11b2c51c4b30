#include "qlora/data/span.h"

#include <algorithm>
#include <cstdlib>

#include "qlora/core/unicode.h"

namespace qlora::data {

std::u32string nfc_codepoints(std::string_view text) {
  const auto decoded = utf8_decode(nfc(text));
  return std::u32string(decoded.begin(), decoded.end());
}

SpanContext::SpanContext(std::string_view raw)
    : raw_(raw), raw_char_to_byte_(utf8_char_to_byte(raw)), normalized_(nfc(raw)) {
  const auto decoded = utf8_decode(normalized_);
  codepoints_.assign(decoded.begin(), decoded.end());
}

int64_t SpanContext::map_offset(int64_t start) const {
  if (start < 0) return start;
  const int64_t raw_len = raw_length();
  const int64_t inside = std::min(start, raw_len);
  // Text already in NFC maps to itself; skip the work for the common case.
  const bool identity = normalized_.size() == raw_.size() && normalized_ == raw_;
  const int64_t mapped = identity ? inside
                                  : static_cast<int64_t>(utf8_length(
                                        nfc(std::string_view(raw_).substr(0, raw_char_to_byte_[inside]))));
  return mapped + (start - inside);
}

bool SpanContext::holds(const std::u32string& answer, int64_t start) const {
  const int64_t len = static_cast<int64_t>(answer.size());
  if (start < 0 || start + len > static_cast<int64_t>(codepoints_.size())) return false;
  return codepoints_.compare(static_cast<size_t>(start), answer.size(), answer) == 0;
}

std::string SpanContext::text_at(int64_t start, int64_t length) const {
  const int64_t size = static_cast<int64_t>(codepoints_.size());
  const int64_t begin = std::clamp<int64_t>(start, 0, size);
  const int64_t end = std::clamp<int64_t>(start + length, begin, size);
  std::string out;
  for (int64_t i = begin; i < end; ++i) utf8_append(out, codepoints_[static_cast<size_t>(i)]);
  return out;
}

int64_t SpanContext::nearest_occurrence(const std::u32string& answer, int64_t start) const {
  if (answer.empty()) return -1;
  int64_t best = -1;
  for (size_t pos = codepoints_.find(answer); pos != std::u32string::npos;
       pos = codepoints_.find(answer, pos + 1)) {
    const int64_t p = static_cast<int64_t>(pos);
    // Strictly nearer wins, so among equally near occurrences the earlier one stays.
    if (best < 0 || std::llabs(p - start) < std::llabs(best - start)) best = p;
  }
  return best;
}

}  // namespace qlora::data
