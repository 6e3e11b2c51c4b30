#include "qlora/eval/python_text.h"

#include <utf8proc.h>

#include <algorithm>
#include <initializer_list>

namespace qlora::eval {

namespace {

bool in_categories(char32_t c, std::initializer_list<utf8proc_category_t> categories) {
  const auto actual = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return std::find(categories.begin(), categories.end(), actual) != categories.end();
}

bool in_list(char32_t c, std::initializer_list<char32_t> list) {
  return std::find(list.begin(), list.end(), c) != list.end();
}

constexpr char32_t kCapitalSigma = 0x03A3;
constexpr char32_t kSmallSigma = 0x03C3;
constexpr char32_t kFinalSigma = 0x03C2;
constexpr char32_t kCapitalIWithDot = 0x0130;
constexpr char32_t kCombiningDotAbove = 0x0307;

}  // namespace

bool python_is_space(char32_t c) {
  // Python's _PyUnicode_IsWhitespace: bidirectional class WS, B or S, or category Zs.
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || (c >= 0x2000 && c <= 0x200A) ||
         in_list(c, {0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000});
}

bool python_is_word(char32_t c) {
  return c == '_' || in_categories(c, {UTF8PROC_CATEGORY_LU, UTF8PROC_CATEGORY_LL, UTF8PROC_CATEGORY_LT,
                                       UTF8PROC_CATEGORY_LM, UTF8PROC_CATEGORY_LO, UTF8PROC_CATEGORY_ND,
                                       UTF8PROC_CATEGORY_NL, UTF8PROC_CATEGORY_NO});
}

bool is_unicode_punctuation(char32_t c) {
  return in_categories(
      c, {UTF8PROC_CATEGORY_PC, UTF8PROC_CATEGORY_PD, UTF8PROC_CATEGORY_PS, UTF8PROC_CATEGORY_PE,
          UTF8PROC_CATEGORY_PI, UTF8PROC_CATEGORY_PF, UTF8PROC_CATEGORY_PO});
}

bool is_ascii_punctuation(char32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}

bool python_is_cased(char32_t c) {
  if (in_categories(c, {UTF8PROC_CATEGORY_LU, UTF8PROC_CATEGORY_LL, UTF8PROC_CATEGORY_LT})) return true;
  // Other_Lowercase / Other_Uppercase outside Lu/Ll/Lt and outside Lm/Mn (which are
  // case-ignorable, so str.lower() never asks whether they are cased): ª º, Roman numerals,
  // circled and squared Latin letters.
  return c == 0xAA || c == 0xBA || (c >= 0x2160 && c <= 0x217F) || (c >= 0x24B6 && c <= 0x24E9) ||
         (c >= 0x1F130 && c <= 0x1F149) || (c >= 0x1F150 && c <= 0x1F169) || (c >= 0x1F170 && c <= 0x1F189);
}

bool python_is_case_ignorable(char32_t c) {
  if (in_categories(c, {UTF8PROC_CATEGORY_MN, UTF8PROC_CATEGORY_ME, UTF8PROC_CATEGORY_CF,
                        UTF8PROC_CATEGORY_LM, UTF8PROC_CATEGORY_SK})) {
    return true;
  }
  // Word_Break MidLetter, MidNumLet and Single_Quote.
  return in_list(c, {0x0027, 0x002E, 0x003A, 0x00B7, 0x0387, 0x055F, 0x05F4, 0x2018, 0x2019, 0x2024, 0x2027,
                     0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A});
}

namespace {

// CPython's handle_capital_sigma: final when preceded by a cased letter and not followed by one,
// skipping case-ignorable characters in both directions.
bool is_final_sigma(std::u32string_view text, size_t i) {
  size_t j = i;
  while (j > 0 && python_is_case_ignorable(text[j - 1])) --j;
  if (j == 0 || !python_is_cased(text[j - 1])) return false;
  size_t k = i + 1;
  while (k < text.size() && python_is_case_ignorable(text[k])) ++k;
  return k == text.size() || !python_is_cased(text[k]);
}

}  // namespace

std::u32string python_lower(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char32_t c = text[i];
    if (c == kCapitalIWithDot) {
      out.push_back('i');
      out.push_back(kCombiningDotAbove);
    } else if (c == kCapitalSigma) {
      out.push_back(is_final_sigma(text, i) ? kFinalSigma : kSmallSigma);
    } else {
      out.push_back(static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
    }
  }
  return out;
}

std::vector<std::u32string> python_split(std::u32string_view text) {
  std::vector<std::u32string> pieces;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && python_is_space(text[i])) ++i;
    const size_t begin = i;
    while (i < text.size() && !python_is_space(text[i])) ++i;
    if (i > begin) pieces.emplace_back(text.substr(begin, i - begin));
  }
  return pieces;
}

std::u32string replace_whole_words(std::u32string_view text, const std::vector<std::u32string>& words) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (!python_is_word(text[i])) {
      out.push_back(text[i++]);
      continue;
    }
    const size_t begin = i;
    while (i < text.size() && python_is_word(text[i])) ++i;
    const std::u32string_view run = text.substr(begin, i - begin);
    if (std::find(words.begin(), words.end(), run) != words.end()) {
      out.push_back(' ');
    } else {
      out.append(run);
    }
  }
  return out;
}

}  // namespace qlora::eval
