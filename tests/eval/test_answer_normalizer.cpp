// The normalisers against the official scripts' normalize_answer (table in squad_cases.json), and the
// Python str facts they are built on against Python 3.11 for every code point assigned in Unicode 14
// (unicode_python.json, both written by tools/gen_eval_fixtures.py).
#include <gtest/gtest.h>

#include <map>

#include "eval_test_util.h"
#include "qlora/core/unicode.h"
#include "qlora/eval/answer_normalizer.h"
#include "qlora/eval/python_text.h"

namespace {

using qlora::Json;
using namespace qlora::eval;
using namespace qlora_eval_test;

const Json& python_facts() {
  static const Json facts = qlora::read_json_file(fixture("unicode_python.json"));
  return facts;
}

// Expands [[first, last], ...] into a membership table over all code points.
std::vector<bool> table_of(const Json& ranges) {
  std::vector<bool> table(0x110000, false);
  for (const auto& r : ranges) {
    for (uint32_t c = r[0].get<uint32_t>(); c <= r[1].get<uint32_t>(); ++c) table[c] = true;
  }
  return table;
}

// Checks `actual(c)` against the table for every code point assigned in Python's Unicode version,
// reporting the first few mismatches.
void expect_matches_python(const char* what, const std::vector<bool>& expected, bool (*actual)(char32_t)) {
  static const std::vector<bool> assigned = table_of(python_facts()["assigned"]);
  int mismatches = 0;
  for (uint32_t c = 0; c < 0x110000; ++c) {
    if (!assigned[c] || expected[c] == actual(c)) continue;
    if (++mismatches <= 5) ADD_FAILURE() << what << ": U+" << std::hex << c << " Python says " << expected[c];
  }
  EXPECT_EQ(mismatches, 0) << what;
}

TEST(PythonText, FixtureIsFromPythonsUnicode14) { EXPECT_EQ(python_facts()["unicode_version"], "14.0.0"); }

TEST(PythonText, WordCharactersMatchPythonRe) {
  expect_matches_python("\\w", table_of(python_facts()["word"]), python_is_word);
}

TEST(PythonText, PunctuationMatchesMlqaSet) {
  expect_matches_python("MLQA PUNCT", table_of(python_facts()["mlqa_punct"]),
                        [](char32_t c) { return is_unicode_punctuation(c) || is_ascii_punctuation(c); });
}

TEST(PythonText, WhitespaceMatchesStrIsspace) {
  std::vector<bool> expected(0x110000, false);
  for (const auto& c : python_facts()["whitespace"]) expected[c.get<uint32_t>()] = true;
  expect_matches_python("isspace", expected, python_is_space);
}

TEST(PythonText, FinalSigmaContextClassesMatchPython) {
  expect_matches_python("case-ignorable", table_of(python_facts()["sigma_ignorable"]),
                        python_is_case_ignorable);
  expect_matches_python("cased (not ignorable)", table_of(python_facts()["sigma_cased"]),
                        [](char32_t c) { return !python_is_case_ignorable(c) && python_is_cased(c); });
}

TEST(PythonText, LowerMatchesStrLowerForEveryCodePoint) {
  std::map<uint32_t, std::u32string> changed;
  for (const auto& row : python_facts()["lower"]) {
    std::u32string lowered;
    for (const auto& c : row[1]) lowered.push_back(static_cast<char32_t>(c.get<uint32_t>()));
    changed[row[0].get<uint32_t>()] = lowered;
  }
  const std::vector<bool> assigned = table_of(python_facts()["assigned"]);
  int mismatches = 0;
  for (uint32_t c = 0; c < 0x110000; ++c) {
    if (!assigned[c]) continue;
    auto it = changed.find(c);
    const std::u32string expected = it == changed.end() ? std::u32string(1, c) : it->second;
    if (python_lower(std::u32string(1, c)) != expected && ++mismatches <= 5) {
      ADD_FAILURE() << "lower(U+" << std::hex << c << ")";
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(PythonText, SplitAndWholeWordReplacement) {
  EXPECT_EQ(python_split(U"\u00a0a\u001fb\u200bc  "), (std::vector<std::u32string>{U"a", U"b\u200bc"}));
  // "a" before a combining grave is a whole word for re (marks are not \w); "ãa" is one word.
  EXPECT_EQ(replace_whole_words(U"a\u0300o \u00e3a the_x the", {U"a", U"the"}), U" \u0300o \u00e3a the_x  ");
}

TEST(AnswerNormalizer, EqualsTheScriptsOnEveryTableText) {
  const std::vector<std::pair<std::string, AnswerNormalizer>> normalizers = [] {
    std::vector<std::pair<std::string, AnswerNormalizer>> out = {{"squad", AnswerNormalizer()}};
    for (const auto& lang : mlqa_languages())
      out.emplace_back("mlqa_" + lang, AnswerNormalizer(Normalization::mlqa, lang));
    return out;
  }();
  size_t rows = 0;
  for (const auto& row : squad_cases()["normalized"]) {
    const std::string text = row["text"];
    for (const auto& [key, normalizer] : normalizers) {
      EXPECT_EQ(normalizer.normalize(text), row[key].get<std::string>()) << key << " of \"" << text << "\"";
    }
    ++rows;
  }
  EXPECT_GE(rows, 100u);
}

TEST(AnswerNormalizer, TiengVietSquadKeepsWhatMlqaRemoves) {
  const AnswerNormalizer squad;
  const AnswerNormalizer mlqa(Normalization::mlqa, "vi");
  // Values as the table (from the scripts) records them; checked here so the behaviour is visible.
  EXPECT_EQ(squad.normalize("« Tiếng Việt »"), "« tiếng việt »");
  EXPECT_EQ(mlqa.normalize("« Tiếng Việt »"), "tiếng việt");
  EXPECT_EQ(squad.normalize("CỦA LÀ CÁI CHIẾC NHỮNG"), "của là cái chiếc những");
  EXPECT_EQ(mlqa.normalize("CỦA LÀ CÁI CHIẾC NHỮNG"), "");
  EXPECT_EQ(mlqa.normalize("1945–1954"), "19451954");  // the en dash goes, leaving one token
  EXPECT_EQ(squad.tokens("  đà   nẵng  "), (std::vector<std::string>{"đà", "nẵng"}));
  for (const auto& row : squad_cases()["normalized"]) {
    if (row["text"] == "« Tiếng Việt »") {
      EXPECT_EQ(row["squad"], "« tiếng việt »");
      EXPECT_EQ(row["mlqa_vi"], "tiếng việt");
    }
  }
}

TEST(AnswerNormalizer, NoNfcLikeTheScripts) {
  const AnswerNormalizer mlqa(Normalization::mlqa, "vi");
  const std::string nfd = "Ha\xcc\x80 No\xcc\x82\xcc\xa3i";  // "Hà Nội" decomposed
  EXPECT_NE(mlqa.normalize(nfd), mlqa.normalize("Hà Nội"));
  EXPECT_EQ(mlqa.normalize(qlora::nfc(nfd)), mlqa.normalize("Hà Nội"));
}

}  // namespace
