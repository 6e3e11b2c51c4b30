// Answer normalisation of the official extractive-QA evaluation scripts, applied before EM and
// token F1: lower-case, remove punctuation, remove articles, collapse whitespace.
//   squad: SQuAD v1.1/v2.0 (ASCII string.punctuation only; articles a|an|the, whatever the language).
//   mlqa:  facebookresearch/MLQA mlqa_evaluation_v1.py (every Unicode P* character plus ASCII
//          punctuation; per-language articles, e.g. vi: của|là|cái|chiếc|những; zh split per character).
// Text is taken as it comes (no NFC), as the scripts do: an NFD prediction does not match NFC gold.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace qlora::eval {

enum class Normalization { squad, mlqa };

// "squad" / "mlqa"; anything else is an Error with a did-you-mean.
Normalization parse_normalization(const std::string& name);
const char* normalization_name(Normalization normalization);

// The languages MLQA's script knows: en es hi vi de ar zh.
const std::vector<std::string>& mlqa_languages();

class AnswerNormalizer {
 public:
  // `lang` matters for mlqa only, where it is required (an empty or unknown language is an Error: the
  // article list differs per language, so no default can be right); squad ignores it, as the
  // official script has no language.
  explicit AnswerNormalizer(Normalization normalization = Normalization::squad, const std::string& lang = "");

  // normalize_answer(s) of the script. Throws Error on malformed UTF-8.
  std::string normalize(std::string_view text) const;
  // normalize_answer(s).split(): the tokens that F1 counts.
  std::vector<std::string> tokens(std::string_view text) const;

  Normalization normalization() const { return normalization_; }
  const std::string& lang() const { return lang_; }

 private:
  Normalization normalization_;
  std::string lang_;
  std::vector<std::u32string> articles_;  // whole words replaced by " "
};

}  // namespace qlora::eval
