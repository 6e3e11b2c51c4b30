// A line-by-line port of nltk 3.10.4 nltk/stem/porter.py, mode NLTK_EXTENSIONS (the default, and what
// rouge-score's DefaultTokenizer(use_stemmer=True) constructs). The step functions keep nltk's names
// and rule order, including its quirks: the first rule whose suffix matches decides (a failed
// condition stops the list), the "*d" pseudo-suffix, and the NLTK-only rules (irregular forms,
// "ies"/"ied" on 4-letter words, "alli" first, "fulli", "logi").
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "qlora/eval/text_tokenize.h"

namespace qlora::eval {

namespace {

using Condition = std::function<bool(const std::string& stem)>;

struct Rule {
  std::string suffix;  // "*d": the word ends in a double consonant
  std::string replacement;
  Condition condition;  // empty: unconditional
};

bool is_vowel(char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; }

bool ends_with(const std::string& word, const std::string& suffix) {
  return word.size() >= suffix.size() &&
         word.compare(word.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string drop_suffix(const std::string& word, size_t n) { return word.substr(0, word.size() - n); }

// nltk's _consonant_flags: 'y' is a consonant at the start or after a vowel, else a vowel.
std::vector<bool> consonant_flags(const std::string& word) {
  std::vector<bool> flags(word.size());
  for (size_t i = 0; i < word.size(); ++i) {
    const char c = word[i];
    if (is_vowel(c)) {
      flags[i] = false;
    } else if (c == 'y') {
      flags[i] = i == 0 ? true : !flags[i - 1];
    } else {
      flags[i] = true;
    }
  }
  return flags;
}

bool is_consonant(const std::string& word, size_t i) { return consonant_flags(word.substr(0, i + 1))[i]; }

// m in [C](VC){m}[V]: the number of vowel-to-consonant transitions.
int measure(const std::string& stem) {
  const auto flags = consonant_flags(stem);
  int m = 0;
  for (size_t i = 1; i < flags.size(); ++i) m += (!flags[i - 1] && flags[i]) ? 1 : 0;
  return m;
}

bool has_positive_measure(const std::string& stem) { return measure(stem) > 0; }

bool contains_vowel(const std::string& stem) {
  for (bool consonant : consonant_flags(stem))
    if (!consonant) return true;
  return false;
}

bool ends_double_consonant(const std::string& word) {
  const size_t n = word.size();
  return n >= 2 && word[n - 1] == word[n - 2] && is_consonant(word, n - 1);
}

// *o: ends consonant-vowel-consonant, the last not w, x or y; NLTK also accepts a 2-letter
// vowel-consonant word.
bool ends_cvc(const std::string& word) {
  const size_t n = word.size();
  if (n >= 3 && is_consonant(word, n - 3) && !is_consonant(word, n - 2) && is_consonant(word, n - 1) &&
      word[n - 1] != 'w' && word[n - 1] != 'x' && word[n - 1] != 'y') {
    return true;
  }
  return n == 2 && !is_consonant(word, 0) && is_consonant(word, 1);
}

std::string apply_rule_list(const std::string& word, const std::vector<Rule>& rules) {
  for (const auto& rule : rules) {
    if (rule.suffix == "*d" && ends_double_consonant(word)) {
      const std::string stem = drop_suffix(word, 2);
      if (!rule.condition || rule.condition(stem)) return stem + rule.replacement;
      return word;
    }
    if (ends_with(word, rule.suffix)) {
      const std::string stem = drop_suffix(word, rule.suffix.size());
      if (!rule.condition || rule.condition(stem)) return stem + rule.replacement;
      return word;
    }
  }
  return word;
}

std::string step1a(const std::string& word) {
  if (ends_with(word, "ies") && word.size() == 4) return drop_suffix(word, 3) + "ie";
  return apply_rule_list(word, {{"sses", "ss", {}}, {"ies", "i", {}}, {"ss", "ss", {}}, {"s", "", {}}});
}

std::string step1b(const std::string& word) {
  if (ends_with(word, "ied")) return drop_suffix(word, 3) + (word.size() == 4 ? "ie" : "i");
  if (ends_with(word, "eed")) {
    const std::string stem = drop_suffix(word, 3);
    return measure(stem) > 0 ? stem + "ee" : word;
  }
  std::string intermediate;
  bool rule_2_or_3_succeeded = false;
  for (const std::string suffix : {"ed", "ing"}) {
    if (ends_with(word, suffix)) {
      intermediate = drop_suffix(word, suffix.size());
      if (contains_vowel(intermediate)) {
        rule_2_or_3_succeeded = true;
        break;
      }
    }
  }
  if (!rule_2_or_3_succeeded) return word;
  const char last = intermediate.back();
  return apply_rule_list(
      intermediate,
      {{"at", "ate", {}},
       {"bl", "ble", {}},
       {"iz", "ize", {}},
       {"*d", std::string(1, last),
        [last](const std::string&) { return last != 'l' && last != 's' && last != 'z'; }},
       {"", "e", [](const std::string& stem) { return measure(stem) == 1 && ends_cvc(stem); }}});
}

// NLTK: y -> i only after a consonant, and not when the stem is that single consonant.
std::string step1c(const std::string& word) {
  return apply_rule_list(word, {{"y", "i", [](const std::string& stem) {
                                   return stem.size() > 1 && is_consonant(stem, stem.size() - 1);
                                 }}});
}

std::string step2(const std::string& word) {
  if (ends_with(word, "alli") && has_positive_measure(drop_suffix(word, 4))) {
    return step2(drop_suffix(word, 4) + "al");
  }
  const Condition m0 = has_positive_measure;
  std::vector<Rule> rules = {
      {"ational", "ate", m0}, {"tional", "tion", m0}, {"enci", "ence", m0},   {"anci", "ance", m0},
      {"izer", "ize", m0},    {"bli", "ble", m0},     {"alli", "al", m0},     {"entli", "ent", m0},
      {"eli", "e", m0},       {"ousli", "ous", m0},   {"ization", "ize", m0}, {"ation", "ate", m0},
      {"ator", "ate", m0},    {"alism", "al", m0},    {"iveness", "ive", m0}, {"fulness", "ful", m0},
      {"ousness", "ous", m0}, {"aliti", "al", m0},    {"iviti", "ive", m0},   {"biliti", "ble", m0},
      {"fulli", "ful", m0},
  };
  // The 'l' of "logi" stays with the stem for the measure, so "geo"/"theo" stems qualify.
  const std::string word_but_3 = word.size() >= 3 ? drop_suffix(word, 3) : std::string();
  rules.push_back(
      {"logi", "log", [word_but_3](const std::string&) { return has_positive_measure(word_but_3); }});
  return apply_rule_list(word, rules);
}

std::string step3(const std::string& word) {
  const Condition m0 = has_positive_measure;
  return apply_rule_list(word, {{"icate", "ic", m0},
                                {"ative", "", m0},
                                {"alize", "al", m0},
                                {"iciti", "ic", m0},
                                {"ical", "ic", m0},
                                {"ful", "", m0},
                                {"ness", "", m0}});
}

std::string step4(const std::string& word) {
  const Condition m1 = [](const std::string& stem) { return measure(stem) > 1; };
  const Condition ion = [](const std::string& stem) {
    return measure(stem) > 1 && !stem.empty() && (stem.back() == 's' || stem.back() == 't');
  };
  return apply_rule_list(word, {{"al", "", m1},
                                {"ance", "", m1},
                                {"ence", "", m1},
                                {"er", "", m1},
                                {"ic", "", m1},
                                {"able", "", m1},
                                {"ible", "", m1},
                                {"ant", "", m1},
                                {"ement", "", m1},
                                {"ment", "", m1},
                                {"ent", "", m1},
                                {"ion", "", ion},
                                {"ou", "", m1},
                                {"ism", "", m1},
                                {"ate", "", m1},
                                {"iti", "", m1},
                                {"ous", "", m1},
                                {"ive", "", m1},
                                {"ize", "", m1}});
}

// Both (m>1) E and (m=1 and not *o) E are tried, unlike apply_rule_list (see nltk's comment).
std::string step5a(const std::string& word) {
  if (ends_with(word, "e")) {
    const std::string stem = drop_suffix(word, 1);
    if (measure(stem) > 1) return stem;
    if (measure(stem) == 1 && !ends_cvc(stem)) return stem;
  }
  return word;
}

std::string step5b(const std::string& word) {
  const std::string word_but_1 = word.empty() ? word : drop_suffix(word, 1);
  return apply_rule_list(word,
                         {{"ll", "l", [word_but_1](const std::string&) { return measure(word_but_1) > 1; }}});
}

// NLTK's table of irregular forms, inverted: form -> stem.
const std::unordered_map<std::string, std::string>& irregular_forms() {
  static const std::unordered_map<std::string, std::string> pool = {
      {"sky", "sky"},        {"skies", "sky"},       {"dying", "die"},        {"lying", "lie"},
      {"tying", "tie"},      {"news", "news"},       {"innings", "inning"},   {"inning", "inning"},
      {"outings", "outing"}, {"outing", "outing"},   {"cannings", "canning"}, {"canning", "canning"},
      {"howe", "howe"},      {"proceed", "proceed"}, {"exceed", "exceed"},    {"succeed", "succeed"},
  };
  return pool;
}

}  // namespace

std::string porter_stem(std::string_view word_view) {
  // Callers pass lowercase ASCII (rouge-score's tokens); nltk's own lower() is then a no-op.
  std::string stem(word_view);
  const auto& pool = irregular_forms();
  if (auto it = pool.find(stem); it != pool.end()) return it->second;
  if (stem.size() <= 2) return stem;
  stem = step1a(stem);
  stem = step1b(stem);
  stem = step1c(stem);
  stem = step2(stem);
  stem = step3(stem);
  stem = step4(stem);
  stem = step5a(stem);
  stem = step5b(stem);
  return stem;
}

}  // namespace qlora::eval
