// The tokenizers behind the text metrics, each equal to its reference package:
//   porter_stem            nltk 3.10.4 PorterStemmer() in its default NLTK_EXTENSIONS mode — the stemmer
//                          rouge-score 0.1.2 builds for use_stemmer=True (not ORIGINAL_ALGORITHM).
//   rouge_default_tokenize rouge-score's tokenize.tokenize (ASCII [a-z0-9] words only).
//   rouge_unicode_tokenize qlora's Unicode word tokenizer for ROUGE on Vietnamese and other
//                          non-ASCII text (no reference package; see below).
//   tokenize_13a           sacrebleu 2.6.0's Tokenizer13a (mteval-v13a), the BLEU default.
//   tokenize_intl          sacrebleu 2.6.0's TokenizerV14International ("intl").
// Inputs are UTF-8; malformed UTF-8 is an Error.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace qlora::eval {

// Porter-stems one lowercase word as nltk's PorterStemmer().stem(word) does.
std::string porter_stem(std::string_view word);

// rouge-score's default tokenizer: Python str.lower(), every run of characters outside [a-z0-9]
// becomes a separator, and (use_stemmer) words longer than 3 characters are Porter-stemmed.
// Non-ASCII letters are separators, so "Tiếng Việt" gives ["ti", "ng", "vi", "t"].
std::vector<std::string> rouge_default_tokenize(std::string_view text, bool use_stemmer);

// Unicode words: NFC(case_fold(text)) (utf8proc), then maximal runs of letters, numbers and
// combining marks (general categories L*, N*, M*); everything else separates. "Tiếng Việt" gives
// ["tiếng", "việt"]. Never stems (the Porter stemmer is English-only).
std::vector<std::string> rouge_unicode_tokenize(std::string_view text);

// sacrebleu's 13a tokenizer on one segment (the caller rstrip()s first, as sacrebleu's BLEU does):
// drops "<skipped>", joins "-\n", turns "\n" into " ", unescapes &quot; &amp; &lt; &gt;, splits off
// ASCII punctuation and symbols (keeping '.' and ',' inside numbers and '-' except after a digit),
// and joins the pieces with single spaces.
std::string tokenize_13a(std::string_view line);

// sacrebleu's TokenizerV14International ("intl", mteval-v14): splits off Unicode punctuation (P*)
// unless between digits (N*) and symbols (S*). Categories come from utf8proc, so code points whose
// category changed after its Unicode version may differ from the `regex` module's.
std::string tokenize_intl(std::string_view line);

// Python's str.rstrip() (str.isspace() whitespace) and str.split() on UTF-8 text.
std::string python_rstrip(std::string_view text);
std::vector<std::string> python_split_utf8(std::string_view text);

}  // namespace qlora::eval
