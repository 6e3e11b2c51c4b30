// UTF-8 helpers. Offsets that users and Hugging Face see are code-point offsets (Python str
// indices); internally text stays UTF-8 bytes. These convert between the two.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qlora {

// Byte length of the UTF-8 sequence that starts with `lead`, for text already known to be valid.
inline size_t utf8_lead_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  return 4;
}

// True when `text` is well-formed UTF-8.
bool is_valid_utf8(std::string_view text);

// Number of code points; throws Error on malformed UTF-8.
size_t utf8_length(std::string_view text);

// Decodes to code points; throws Error on malformed UTF-8.
std::vector<char32_t> utf8_decode(std::string_view text);
std::string utf8_encode(const std::vector<char32_t>& codepoints);
void utf8_append(std::string& out, char32_t codepoint);

// byte_offsets[i] is the byte position of code point i; the last entry is text.size().
// Size is utf8_length(text) + 1.
std::vector<size_t> utf8_char_to_byte(std::string_view text);

// Maps a byte position (on a code-point boundary, or text.size()) to a code-point index.
// A position inside a multi-byte sequence maps to the code point that contains it.
std::vector<size_t> utf8_byte_to_char(std::string_view text);

// Unicode NFC normalisation (utf8proc). Throws Error on malformed UTF-8.
std::string nfc(std::string_view text);

// Substring by code-point positions [begin, end).
std::string utf8_substr(std::string_view text, size_t begin_char, size_t end_char);

}  // namespace qlora
