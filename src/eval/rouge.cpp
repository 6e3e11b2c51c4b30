// A port of rouge-score 0.1.2 rouge_scorer.py: the same counting, the same LCS table and backtrack
// (its tie-breaking decides which LCS rougeLsum unions), the same float operations in the same order.
#include "qlora/eval/rouge.h"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include "qlora/core/error.h"
#include "qlora/eval/text_tokenize.h"

namespace qlora::eval {

namespace {

using Tokens = std::vector<std::string>;

// scoring.fmeasure.
double fmeasure(double precision, double recall) {
  return precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
}

RougeScore make_score(double precision, double recall) {
  return {precision, recall, fmeasure(precision, recall)};
}

std::map<Tokens, int64_t> ngrams(const Tokens& tokens, size_t n) {
  std::map<Tokens, int64_t> counts;
  for (size_t i = 0; i + n <= tokens.size(); ++i)
    ++counts[Tokens(tokens.begin() + i, tokens.begin() + i + n)];
  return counts;
}

RougeScore score_ngrams(const Tokens& target, const Tokens& prediction, size_t n) {
  const auto target_ngrams = ngrams(target, n);
  const auto prediction_ngrams = ngrams(prediction, n);
  int64_t overlap = 0, target_count = 0, prediction_count = 0;
  for (const auto& [gram, count] : target_ngrams) {
    auto it = prediction_ngrams.find(gram);
    overlap += std::min(count, it == prediction_ngrams.end() ? int64_t{0} : it->second);
    target_count += count;
  }
  for (const auto& item : prediction_ngrams) prediction_count += item.second;
  const double precision =
      static_cast<double>(overlap) / static_cast<double>(std::max<int64_t>(prediction_count, 1));
  const double recall =
      static_cast<double>(overlap) / static_cast<double>(std::max<int64_t>(target_count, 1));
  return make_score(precision, recall);
}

// _lcs_table: [len(ref) + 1, len(can) + 1].
std::vector<std::vector<int32_t>> lcs_table(const Tokens& ref, const Tokens& can) {
  std::vector<std::vector<int32_t>> table(ref.size() + 1, std::vector<int32_t>(can.size() + 1, 0));
  for (size_t i = 1; i <= ref.size(); ++i) {
    for (size_t j = 1; j <= can.size(); ++j) {
      table[i][j] =
          ref[i - 1] == can[j - 1] ? table[i - 1][j - 1] + 1 : std::max(table[i - 1][j], table[i][j - 1]);
    }
  }
  return table;
}

RougeScore score_lcs(const Tokens& target, const Tokens& prediction) {
  if (target.empty() || prediction.empty()) return {};
  const double lcs = lcs_table(target, prediction)[target.size()][prediction.size()];
  return make_score(lcs / static_cast<double>(prediction.size()), lcs / static_cast<double>(target.size()));
}

// lcs_ind / _backtrack_norec: indices into `ref` of one LCS, chosen as rouge-score chooses it.
std::vector<size_t> lcs_indices(const Tokens& ref, const Tokens& can) {
  const auto t = lcs_table(ref, can);
  std::vector<size_t> indices;
  size_t i = ref.size(), j = can.size();
  while (i > 0 && j > 0) {
    if (ref[i - 1] == can[j - 1]) {
      indices.push_back(i - 1);
      --i;
      --j;
    } else if (t[i][j - 1] > t[i - 1][j]) {
      --j;
    } else {
      --i;
    }
  }
  std::reverse(indices.begin(), indices.end());
  return indices;
}

RougeScore summary_level_lcs(const std::vector<Tokens>& ref_sents, const std::vector<Tokens>& can_sents) {
  if (ref_sents.empty() || can_sents.empty()) return {};
  size_t m = 0, n = 0;
  for (const auto& s : ref_sents) m += s.size();
  for (const auto& s : can_sents) n += s.size();
  if (m == 0 || n == 0) return {};
  std::unordered_map<std::string, int64_t> counts_r, counts_c;
  for (const auto& s : ref_sents)
    for (const auto& t : s) ++counts_r[t];
  for (const auto& s : can_sents)
    for (const auto& t : s) ++counts_c[t];
  int64_t hits = 0;
  for (const auto& r : ref_sents) {
    std::set<size_t> union_indices;  // sorted, as _find_union sorts the set
    for (const auto& c : can_sents) {
      for (size_t index : lcs_indices(r, c)) union_indices.insert(index);
    }
    for (size_t index : union_indices) {
      const std::string& token = r[index];
      if (counts_c[token] > 0 && counts_r[token] > 0) {
        ++hits;
        --counts_c[token];
        --counts_r[token];
      }
    }
  }
  return make_score(static_cast<double>(hits) / static_cast<double>(n),
                    static_cast<double>(hits) / static_cast<double>(m));
}

// get_sents: text.split("\n") without empty pieces, each tokenized.
std::vector<Tokens> sentence_tokens(std::string_view text, const RougeOptions& options) {
  std::vector<Tokens> sents;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    if (end > begin) sents.push_back(rouge_tokenize(text.substr(begin, end - begin), options));
    begin = end + 1;
  }
  return sents;
}

RougeScore& type_score(RougeScores& scores, int type) {
  switch (type) {
    case 0:
      return scores.rouge1;
    case 1:
      return scores.rouge2;
    case 2:
      return scores.rougeL;
    default:
      return scores.rougeLsum;
  }
}

constexpr const char* kTypeNames[] = {"rouge1", "rouge2", "rougeL", "rougeLsum"};

}  // namespace

RougeTokenizer parse_rouge_tokenizer(const std::string& name) {
  if (name == "default") return RougeTokenizer::default_ascii;
  if (name == "unicode") return RougeTokenizer::unicode;
  fail("unknown ROUGE tokenizer '" + name + "' (expected default or unicode)");
}

const char* rouge_tokenizer_name(RougeTokenizer tokenizer) {
  return tokenizer == RougeTokenizer::unicode ? "unicode" : "default";
}

std::vector<std::string> rouge_tokenize(std::string_view text, const RougeOptions& options) {
  if (options.tokenizer == RougeTokenizer::unicode) return rouge_unicode_tokenize(text);
  return rouge_default_tokenize(text, options.use_stemmer);
}

RougeScores rouge_score(std::string_view target, std::string_view prediction, const RougeOptions& options) {
  const Tokens target_tokens = rouge_tokenize(target, options);
  const Tokens prediction_tokens = rouge_tokenize(prediction, options);
  RougeScores scores;
  scores.rouge1 = score_ngrams(target_tokens, prediction_tokens, 1);
  scores.rouge2 = score_ngrams(target_tokens, prediction_tokens, 2);
  scores.rougeL = score_lcs(target_tokens, prediction_tokens);
  scores.rougeLsum =
      summary_level_lcs(sentence_tokens(target, options), sentence_tokens(prediction, options));
  return scores;
}

RougeScores rouge_score_multi(const std::vector<std::string>& targets, std::string_view prediction,
                              const RougeOptions& options) {
  if (targets.empty()) fail("ROUGE needs at least one reference per prediction");
  std::vector<RougeScores> all;
  for (const auto& target : targets) all.push_back(rouge_score(target, prediction, options));
  RougeScores best = all[0];
  for (int type = 0; type < 4; ++type) {
    for (auto& candidate : all) {
      // np.argmax: the first maximum wins.
      if (type_score(candidate, type).fmeasure > type_score(best, type).fmeasure) {
        type_score(best, type) = type_score(candidate, type);
      }
    }
  }
  return best;
}

RougeCorpusResult rouge_corpus(const std::vector<std::string>& predictions,
                               const std::vector<std::vector<std::string>>& references,
                               const RougeOptions& options) {
  if (predictions.empty()) fail("ROUGE needs at least one prediction");
  if (predictions.size() != references.size()) {
    fail("ROUGE: " + std::to_string(predictions.size()) + " predictions but " +
         std::to_string(references.size()) + " reference sets");
  }
  RougeCorpusResult result;
  for (size_t i = 0; i < predictions.size(); ++i) {
    if (references[i].empty()) fail("ROUGE: example " + std::to_string(i + 1) + " has no reference");
    result.examples.push_back(rouge_score_multi(references[i], predictions[i], options));
  }
  const double count = static_cast<double>(result.examples.size());
  for (int type = 0; type < 4; ++type) {
    RougeScore& mean = type_score(result.mean, type);
    for (auto& example : result.examples) {
      const RougeScore& s = type_score(example, type);
      mean.precision += s.precision;
      mean.recall += s.recall;
      mean.fmeasure += s.fmeasure;
    }
    mean.precision /= count;
    mean.recall /= count;
    mean.fmeasure /= count;
  }
  return result;
}

Json RougeCorpusResult::to_json(const RougeOptions& options) const {
  Json out;
  RougeScores m = mean;
  for (int type = 0; type < 4; ++type) out[kTypeNames[type]] = 100.0 * type_score(m, type).fmeasure;
  for (int type = 0; type < 4; ++type) {
    out[std::string(kTypeNames[type]) + "_precision"] = 100.0 * type_score(m, type).precision;
    out[std::string(kTypeNames[type]) + "_recall"] = 100.0 * type_score(m, type).recall;
  }
  out["examples"] = examples.size();
  // rouge-score reports fractions in [0, 1]; we report percentages, as the seeds' tables do: say so.
  out["scale"] = 100;
  out["tokenizer"] = rouge_tokenizer_name(options.tokenizer);
  out["use_stemmer"] = options.tokenizer == RougeTokenizer::default_ascii && options.use_stemmer;
  return out;
}

}  // namespace qlora::eval
