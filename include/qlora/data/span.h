// Answer spans of extractive QA, in code points (Python str indices), checked against a context
// after NFC normalisation. The offset given for the raw text is carried into the normalised
// text as len(nfc(raw[:start])), which is what Python computes for the same question.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qlora::data {

// A context decoded once and reused for all answers of a paragraph.
class SpanContext {
 public:
  explicit SpanContext(std::string_view raw);  // throws Error on malformed UTF-8

  const std::string& normalized() const { return normalized_; }     // nfc(raw)
  const std::u32string& codepoints() const { return codepoints_; }  // nfc(raw), decoded
  int64_t raw_length() const { return static_cast<int64_t>(raw_char_to_byte_.size()) - 1; }

  // len(nfc(raw[:start])). A start past the end of raw keeps its distance past the end of the
  // normalised text; a negative start is returned unchanged (both then fail check()).
  int64_t map_offset(int64_t start) const;

  // True when the normalised context holds `answer` (NFC, decoded) at code point `start`.
  bool holds(const std::u32string& answer, int64_t start) const;

  // The normalised text at [start, start + length), clipped to the context: for messages.
  std::string text_at(int64_t start, int64_t length) const;

  // The occurrence of `answer` whose start is nearest to `start` (ties go to the earlier one),
  // or -1 when `answer` does not occur.
  int64_t nearest_occurrence(const std::u32string& answer, int64_t start) const;

 private:
  std::string raw_;
  std::vector<size_t> raw_char_to_byte_;
  std::string normalized_;
  std::u32string codepoints_;
};

// nfc(text) decoded to code points; throws Error on malformed UTF-8.
std::u32string nfc_codepoints(std::string_view text);

}  // namespace qlora::data
