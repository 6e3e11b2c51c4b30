#include "qlora/core/unicode.h"

#include <utf8proc.h>

#include <cstdlib>

#include "qlora/core/error.h"

namespace qlora {

namespace {

// Length of the sequence starting at text[i], or 0 if it is malformed.
size_t sequence_length(std::string_view text, size_t i) {
  utf8proc_int32_t cp = 0;
  const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                                  static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
  return n > 0 ? static_cast<size_t>(n) : 0;
}

[[noreturn]] void malformed(size_t byte) { fail("malformed UTF-8 at byte " + std::to_string(byte)); }

}  // namespace

bool is_valid_utf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = sequence_length(text, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

size_t utf8_length(std::string_view text) {
  size_t count = 0;
  for (size_t i = 0; i < text.size(); ++count) {
    const size_t n = sequence_length(text, i);
    if (n == 0) malformed(i);
    i += n;
  }
  return count;
}

std::vector<char32_t> utf8_decode(std::string_view text) {
  std::vector<char32_t> out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    utf8proc_int32_t cp = 0;
    const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + i),
                                    static_cast<utf8proc_ssize_t>(text.size() - i), &cp);
    if (n <= 0) malformed(i);
    out.push_back(static_cast<char32_t>(cp));
    i += static_cast<size_t>(n);
  }
  return out;
}

void utf8_append(std::string& out, char32_t codepoint) {
  utf8proc_uint8_t buf[4];
  const auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(codepoint), buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

std::string utf8_encode(const std::vector<char32_t>& codepoints) {
  std::string out;
  out.reserve(codepoints.size());
  for (char32_t cp : codepoints) utf8_append(out, cp);
  return out;
}

std::vector<size_t> utf8_char_to_byte(std::string_view text) {
  std::vector<size_t> offsets;
  offsets.reserve(text.size() + 1);
  for (size_t i = 0; i < text.size();) {
    const size_t n = sequence_length(text, i);
    if (n == 0) malformed(i);
    offsets.push_back(i);
    i += n;
  }
  offsets.push_back(text.size());
  return offsets;
}

std::vector<size_t> utf8_byte_to_char(std::string_view text) {
  std::vector<size_t> map(text.size() + 1, 0);
  size_t ch = 0;
  for (size_t i = 0; i < text.size(); ++ch) {
    const size_t n = sequence_length(text, i);
    if (n == 0) malformed(i);
    for (size_t k = 0; k < n; ++k) map[i + k] = ch;
    i += n;
  }
  map[text.size()] = ch;
  return map;
}

std::string nfc(std::string_view text) {
  if (!is_valid_utf8(text)) fail("malformed UTF-8 in text to normalise");
  utf8proc_uint8_t* result = nullptr;
  const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                              static_cast<utf8proc_ssize_t>(text.size()), &result,
                              static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) fail(std::string("NFC normalisation failed: ") + utf8proc_errmsg(n));
  std::string out(reinterpret_cast<const char*>(result), static_cast<size_t>(n));
  std::free(result);
  return out;
}

std::string utf8_substr(std::string_view text, size_t begin_char, size_t end_char) {
  const auto offsets = utf8_char_to_byte(text);
  const size_t len = offsets.size() - 1;
  if (begin_char > end_char || end_char > len) {
    fail("substring [" + std::to_string(begin_char) + ", " + std::to_string(end_char) + ") outside text of " +
         std::to_string(len) + " characters");
  }
  return std::string(text.substr(offsets[begin_char], offsets[end_char] - offsets[begin_char]));
}

}  // namespace qlora
