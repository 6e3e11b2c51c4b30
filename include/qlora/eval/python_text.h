// The Python 3 str semantics that the official QA evaluation scripts rely on, so that scores match
// them character for character: str.lower() (full mapping, Final_Sigma), str.split() whitespace,
// re's \w and \b for str patterns, and Unicode punctuation (general category P*).
// Built on utf8proc. Tests compare every assigned code point with Python 3.11 (Unicode 14.0,
// tests/fixtures/eval/unicode_python.json); code points first assigned after Unicode 14 may differ.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace qlora::eval {

// str.isspace(): what str.split() with no argument splits on (includes U+001C..U+001F and U+0085,
// excludes U+200B ZERO WIDTH SPACE).
bool python_is_space(char32_t c);

// re's \w for str patterns: letters (L*), numbers (N*) and '_'. Combining marks are not word
// characters, so \b falls between a base letter and a following NFD accent.
bool python_is_word(char32_t c);

// General category P* (Pc Pd Ps Pe Pi Pf Po): MLQA's punctuation, with ASCII string.punctuation.
bool is_unicode_punctuation(char32_t c);

// Python's string.punctuation: the 32 ASCII characters !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~.
bool is_ascii_punctuation(char32_t c);

// The Unicode properties Cased and Case_Ignorable, as str.lower() uses them for Final_Sigma.
bool python_is_cased(char32_t c);
bool python_is_case_ignorable(char32_t c);

// str.lower(): the full lowercase mapping (U+0130 becomes "i\u0307") and U+03A3 becomes final
// sigma U+03C2 at the end of a word (Unicode's Final_Sigma context), else U+03C3.
std::u32string python_lower(std::u32string_view text);

// str.split() with no argument: runs of non-whitespace, no empty pieces.
std::vector<std::u32string> python_split(std::u32string_view text);

// re.sub(r"\b(w1|w2|...)\b", " ", text) for words made only of \w characters: every maximal run of
// word characters equal to one of `words` becomes a single space.
std::u32string replace_whole_words(std::u32string_view text, const std::vector<std::u32string>& words);

}  // namespace qlora::eval
