#include "qlora/eval/answer_normalizer.h"

#include <algorithm>

#include "qlora/core/error.h"
#include "qlora/core/suggest.h"
#include "qlora/core/unicode.h"
#include "qlora/eval/python_text.h"

namespace qlora::eval {

namespace {

std::vector<std::u32string> decode_all(const std::vector<std::string>& words) {
  std::vector<std::u32string> out;
  for (const auto& word : words) {
    const auto cps = utf8_decode(word);
    out.emplace_back(cps.begin(), cps.end());
  }
  return out;
}

// The article lists of the scripts' remove_articles (MLQA: per language; SQuAD: a|an|the).
std::vector<std::string> article_words(Normalization normalization, const std::string& lang) {
  if (normalization == Normalization::squad || lang == "en") return {"a", "an", "the"};
  if (lang == "es") return {"un", "una", "unos", "unas", "el", "la", "los", "las"};
  if (lang == "vi") return {"của", "là", "cái", "chiếc", "những"};
  if (lang == "de")
    return {"ein", "eine", "einen", "einem", "eines", "einer", "der", "die", "das", "den", "dem", "des"};
  return {};  // hi and zh have none; ar is a substring rule (below)
}

// MLQA's Arabic rule re.sub('\sال^|ال', ' ', text): the first alternative can never match ('^'
// after characters), so every "ال" becomes a space.
std::u32string replace_arabic_al(const std::u32string& text) {
  static const std::u32string al = U"\u0627\u0644";
  std::u32string out;
  size_t i = 0;
  while (i < text.size()) {
    if (text.compare(i, al.size(), al) == 0) {
      out.push_back(' ');
      i += al.size();
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

bool is_mlqa_cjk(char32_t c) { return c >= 0x4E00 && c <= 0x9FA5; }  // the script's [\u4e00-\u9fa5]

bool is_mlqa_punct(char32_t c) { return is_unicode_punctuation(c) || is_ascii_punctuation(c); }

// MLQA's mixed_segmentation (zh): each CJK ideograph and punctuation character is a token; the
// text between them is split on whitespace.
std::vector<std::u32string> mixed_segmentation(const std::u32string& text) {
  std::vector<std::u32string> tokens;
  std::u32string pending;
  auto flush = [&] {
    for (auto& piece : python_split(pending)) tokens.push_back(std::move(piece));
    pending.clear();
  };
  for (char32_t c : text) {
    if (is_mlqa_cjk(c) || is_mlqa_punct(c)) {
      flush();
      tokens.emplace_back(1, c);
    } else {
      pending.push_back(c);
    }
  }
  flush();
  return tokens;
}

}  // namespace

Normalization parse_normalization(const std::string& name) {
  if (name == "squad") return Normalization::squad;
  if (name == "mlqa") return Normalization::mlqa;
  fail("unknown answer normalisation '" + name + "' (expected squad or mlqa)" +
       did_you_mean(name, {"squad", "mlqa"}));
}

const char* normalization_name(Normalization normalization) {
  return normalization == Normalization::squad ? "squad" : "mlqa";
}

const std::vector<std::string>& mlqa_languages() {
  static const std::vector<std::string> langs = {"en", "es", "hi", "vi", "de", "ar", "zh"};
  return langs;
}

AnswerNormalizer::AnswerNormalizer(Normalization normalization, const std::string& lang)
    : normalization_(normalization), lang_(lang) {
  const auto& langs = mlqa_languages();
  if (normalization == Normalization::mlqa && lang.empty()) {
    fail(
        "MLQA normalisation needs a language (--lang en|es|hi|vi|de|ar|zh): its article list differs per "
        "language (en: a, an, the; vi: của, là, cái, chiếc, những)");
  }
  if (normalization == Normalization::mlqa && std::find(langs.begin(), langs.end(), lang) == langs.end()) {
    fail("MLQA normalisation has no rules for language '" + lang + "' (known: en es hi vi de ar zh)" +
         did_you_mean(lang, langs));
  }
  articles_ = decode_all(article_words(normalization, lang));
}

std::vector<std::string> AnswerNormalizer::tokens(std::string_view text) const {
  const auto decoded = utf8_decode(text);
  const std::u32string lowered = python_lower(std::u32string(decoded.begin(), decoded.end()));

  const bool mlqa = normalization_ == Normalization::mlqa;
  std::u32string kept;
  kept.reserve(lowered.size());
  for (char32_t c : lowered) {
    if (!(mlqa ? is_mlqa_punct(c) : is_ascii_punctuation(c))) kept.push_back(c);
  }

  const std::u32string without_articles =
      mlqa && lang_ == "ar" ? replace_arabic_al(kept) : replace_whole_words(kept, articles_);

  const auto pieces =
      mlqa && lang_ == "zh" ? mixed_segmentation(without_articles) : python_split(without_articles);
  std::vector<std::string> out;
  out.reserve(pieces.size());
  for (const auto& piece : pieces)
    out.push_back(utf8_encode(std::vector<char32_t>(piece.begin(), piece.end())));
  return out;
}

std::string AnswerNormalizer::normalize(std::string_view text) const {
  std::string out;
  for (const auto& token : tokens(text)) {
    if (!out.empty()) out.push_back(' ');
    out += token;
  }
  return out;
}

}  // namespace qlora::eval
