#include "qlora/eval/text_tokenize.h"

#include <utf8proc.h>

#include <cstdlib>
#include <functional>
#include <memory>

#include "qlora/core/error.h"
#include "qlora/core/unicode.h"
#include "qlora/eval/python_text.h"

namespace qlora::eval {

namespace {

std::u32string decode(std::string_view text) {
  const auto cps = utf8_decode(text);
  return std::u32string(cps.begin(), cps.end());
}

std::string encode(std::u32string_view text) {
  std::string out;
  for (char32_t c : text) utf8_append(out, c);
  return out;
}

bool is_ascii_alnum(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool is_word_category(char32_t c) {
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

void replace_all(std::u32string& text, std::u32string_view from, std::u32string_view to) {
  std::u32string out;
  size_t i = 0;
  while (i < text.size()) {
    if (text.compare(i, from.size(), from) == 0) {
      out.append(to);
      i += from.size();
    } else {
      out.push_back(text[i++]);
    }
  }
  text = std::move(out);
}

// re.sub over a two-character pattern ([first][second]) scanning left to right without overlap,
// replacing the match (a, b) with `emit(a, b)`.
std::u32string sub_pairs(const std::u32string& text, const std::function<bool(char32_t)>& first,
                         const std::function<bool(char32_t)>& second,
                         const std::function<void(std::u32string&, char32_t, char32_t)>& emit) {
  std::u32string out;
  out.reserve(text.size() + 16);
  size_t i = 0;
  while (i < text.size()) {
    if (i + 1 < text.size() && first(text[i]) && second(text[i + 1])) {
      emit(out, text[i], text[i + 1]);
      i += 2;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

bool is_digit(char32_t c) { return c >= '0' && c <= '9'; }  // re's [0-9]: ASCII only
bool is_period_or_comma(char32_t c) { return c == '.' || c == ','; }

// The character class of 13a's first rule: [\{-\~\[-\` -\&\(-\+\:-\@\/].
bool is_13a_symbol(char32_t c) {
  return (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
         (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == '/';
}

}  // namespace

std::vector<std::string> rouge_default_tokenize(std::string_view text, bool use_stemmer) {
  // lower() may turn non-ASCII into ASCII (U+212A KELVIN SIGN -> 'k', U+0130 -> "i\u0307"), so it
  // runs on the whole text before the [a-z0-9] filter, as in rouge-score.
  const std::u32string lowered = python_lower(decode(text));
  std::vector<std::string> tokens;
  std::string word;
  auto flush = [&] {
    if (word.empty()) return;
    tokens.push_back(use_stemmer && word.size() > 3 ? porter_stem(word) : word);
    word.clear();
  };
  for (char32_t c : lowered) {
    if (is_ascii_alnum(c)) {
      word.push_back(static_cast<char>(c));
    } else {
      flush();
    }
  }
  flush();
  return tokens;
}

std::vector<std::string> rouge_unicode_tokenize(std::string_view text) {
  if (!is_valid_utf8(text)) fail("text is not valid UTF-8");
  utf8proc_uint8_t* folded = nullptr;
  const auto size = utf8proc_map(
      reinterpret_cast<const utf8proc_uint8_t*>(text.data()), static_cast<utf8proc_ssize_t>(text.size()),
      &folded, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_CASEFOLD));
  if (size < 0) fail(std::string("Unicode normalisation failed: ") + utf8proc_errmsg(size));
  const std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owner(folded, &std::free);
  const std::u32string normalized = decode(std::string_view(reinterpret_cast<const char*>(folded), size));
  std::vector<std::string> tokens;
  size_t i = 0;
  while (i < normalized.size()) {
    while (i < normalized.size() && !is_word_category(normalized[i])) ++i;
    const size_t begin = i;
    while (i < normalized.size() && is_word_category(normalized[i])) ++i;
    if (i > begin) tokens.push_back(encode(std::u32string_view(normalized).substr(begin, i - begin)));
  }
  return tokens;
}

std::string tokenize_13a(std::string_view line_utf8) {
  std::u32string line = decode(line_utf8);
  replace_all(line, U"<skipped>", U"");
  replace_all(line, U"-\n", U"");
  replace_all(line, U"\n", U" ");
  if (line.find(U'&') != std::u32string::npos) {
    replace_all(line, U"&quot;", U"\"");
    replace_all(line, U"&amp;", U"&");
    replace_all(line, U"&lt;", U"<");
    replace_all(line, U"&gt;", U">");
  }
  // TokenizerRegexp on f" {line} ".
  std::u32string padded;
  padded.reserve(line.size() * 2 + 2);
  padded.push_back(' ');
  for (char32_t c : line) {
    if (is_13a_symbol(c)) {
      padded.push_back(' ');
      padded.push_back(c);
      padded.push_back(' ');
    } else {
      padded.push_back(c);
    }
  }
  padded.push_back(' ');
  // ([^0-9])([\.,]) -> "\1 \2 ": tokenize period and comma unless preceded by a digit.
  padded = sub_pairs(
      padded, [](char32_t c) { return !is_digit(c); }, is_period_or_comma,
      [](std::u32string& out, char32_t a, char32_t b) {
        out += {a, U' ', b, U' '};
      });
  // ([\.,])([^0-9]) -> " \1 \2": ... unless followed by a digit.
  padded = sub_pairs(
      padded, is_period_or_comma, [](char32_t c) { return !is_digit(c); },
      [](std::u32string& out, char32_t a, char32_t b) {
        out += {U' ', a, U' ', b};
      });
  // ([0-9])(-) -> "\1 \2 ": tokenize a dash preceded by a digit.
  padded = sub_pairs(
      padded, is_digit, [](char32_t c) { return c == '-'; },
      [](std::u32string& out, char32_t a, char32_t b) {
        out += {a, U' ', b, U' '};
      });
  std::string out;
  for (const auto& piece : python_split(padded)) {
    if (!out.empty()) out.push_back(' ');
    out += encode(piece);
  }
  return out;
}

std::string tokenize_intl(std::string_view line_utf8) {
  const auto category = [](char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)); };
  const auto is_number = [&](char32_t c) {
    const auto k = category(c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
  };
  const auto is_punct = [&](char32_t c) { return is_unicode_punctuation(c); };
  const auto is_symbol = [&](char32_t c) {
    const auto k = category(c);
    return k == UTF8PROC_CATEGORY_SM || k == UTF8PROC_CATEGORY_SC || k == UTF8PROC_CATEGORY_SK ||
           k == UTF8PROC_CATEGORY_SO;
  };
  const auto not_number = [&](char32_t c) { return !is_number(c); };
  std::u32string line = decode(line_utf8);
  // (\P{N})(\p{P}) -> "\1 \2 "; (\p{P})(\P{N}) -> " \1 \2"; (\p{S}) -> " \1 ".
  line = sub_pairs(line, not_number, is_punct, [](std::u32string& out, char32_t a, char32_t b) {
    out += {a, U' ', b, U' '};
  });
  line = sub_pairs(line, is_punct, not_number, [](std::u32string& out, char32_t a, char32_t b) {
    out += {U' ', a, U' ', b};
  });
  std::u32string spaced;
  for (char32_t c : line) {
    if (is_symbol(c)) {
      spaced += {U' ', c, U' '};
    } else {
      spaced.push_back(c);
    }
  }
  std::string out;
  for (const auto& piece : python_split(spaced)) {
    if (!out.empty()) out.push_back(' ');
    out += encode(piece);
  }
  return out;
}

std::string python_rstrip(std::string_view text) {
  std::u32string cps = decode(text);
  while (!cps.empty() && python_is_space(cps.back())) cps.pop_back();
  return encode(cps);
}

std::vector<std::string> python_split_utf8(std::string_view text) {
  std::vector<std::string> out;
  for (const auto& piece : python_split(decode(text))) out.push_back(encode(piece));
  return out;
}

}  // namespace qlora::eval
