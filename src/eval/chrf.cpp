// A port of sacrebleu 2.6.0 metrics/chrf.py and the n-gram helpers of metrics/helpers.py. Strings are
// Python str, so n-grams are over code points (no normalisation).
#include "qlora/eval/chrf.h"

#include <set>
#include <unordered_map>

#include "qlora/core/error.h"
#include "qlora/core/unicode.h"
#include "qlora/eval/bleu.h"
#include "qlora/eval/python_text.h"

namespace qlora::eval {

namespace {

using Counter = std::unordered_map<std::u32string, int64_t>;

std::u32string decode(const std::string& text) {
  const auto cps = utf8_decode(text);
  return std::u32string(cps.begin(), cps.end());
}

// extract_all_char_ngrams: orders 1..max_order, whitespace removed unless kept.
std::vector<Counter> char_ngrams(const std::u32string& text, int max_order, bool include_whitespace) {
  std::u32string line;
  if (include_whitespace) {
    line = text;
  } else {
    for (const auto& piece : python_split(text)) line += piece;
  }
  std::vector<Counter> counters;
  for (size_t n = 1; n <= static_cast<size_t>(max_order); ++n) {
    Counter counts;
    for (size_t i = 0; i + n <= line.size(); ++i) ++counts[line.substr(i, n)];
    counters.push_back(std::move(counts));
  }
  return counters;
}

bool is_chrf_punct(char32_t c) { return c < 0x80 && is_ascii_punctuation(c); }  // CHRF._PUNCTS

// CHRF._remove_punctuation: one leading or trailing ASCII punctuation mark becomes its own word.
std::vector<std::u32string> remove_punctuation(const std::u32string& sent) {
  std::vector<std::u32string> words;
  for (auto& w : python_split(sent)) {
    if (w.size() == 1) {
      words.push_back(w);
    } else if (is_chrf_punct(w.back())) {
      words.push_back(w.substr(0, w.size() - 1));
      words.push_back(w.substr(w.size() - 1));
    } else if (is_chrf_punct(w.front())) {
      words.push_back(w.substr(0, 1));
      words.push_back(w.substr(1));
    } else {
      words.push_back(w);
    }
  }
  return words;
}

// extract_word_ngrams: n-grams joined by ' '.
Counter word_ngrams(const std::vector<std::u32string>& words, size_t n) {
  Counter counts;
  for (size_t i = 0; i + n <= words.size(); ++i) {
    std::u32string gram = words[i];
    for (size_t k = 1; k < n; ++k) gram += U' ' + words[i + k];
    ++counts[gram];
  }
  return counts;
}

std::vector<Counter> all_ngrams(const std::string& text, const ChrfOptions& options) {
  std::u32string sent = decode(text);
  if (options.lowercase) sent = python_lower(sent);
  auto counters = char_ngrams(sent, options.char_order, options.whitespace);
  if (options.word_order > 0) {
    const auto words = remove_punctuation(sent);
    for (int n = 1; n <= options.word_order; ++n) counters.push_back(word_ngrams(words, n));
  }
  return counters;
}

// _compute_f_score on flattened [hyp, ref, match] triples per order.
double f_score(const std::vector<int64_t>& stats, const ChrfOptions& options) {
  const double eps = 1e-16;
  const int order = options.char_order + options.word_order;
  const double factor = static_cast<double>(options.beta) * options.beta;
  double score = 0.0, avg_prec = 0.0, avg_rec = 0.0;
  int effective_order = 0;
  for (int i = 0; i < order; ++i) {
    const int64_t n_hyp = stats[3 * i], n_ref = stats[3 * i + 1], n_match = stats[3 * i + 2];
    const double prec = n_hyp > 0 ? static_cast<double>(n_match) / static_cast<double>(n_hyp) : eps;
    const double rec = n_ref > 0 ? static_cast<double>(n_match) / static_cast<double>(n_ref) : eps;
    const double denom = factor * prec + rec;
    score += denom > 0 ? (1 + factor) * prec * rec / denom : eps;
    if (n_hyp > 0 && n_ref > 0) {
      avg_prec += prec;
      avg_rec += rec;
      ++effective_order;
    }
  }
  if (options.eps_smoothing) return 100 * score / order;
  if (effective_order == 0) {
    avg_prec = avg_rec = 0.0;
  } else {
    avg_prec /= effective_order;
    avg_rec /= effective_order;
  }
  if (avg_prec + avg_rec != 0.0) {
    score = (1 + factor) * avg_prec * avg_rec;
    score /= (factor * avg_prec) + avg_rec;
    return 100 * score;
  }
  return 0.0;
}

// _compute_segment_statistics: the statistics of the reference with the best segment F.
std::vector<int64_t> segment_statistics(const std::vector<Counter>& hyp,
                                        const std::vector<std::vector<Counter>>& refs,
                                        const ChrfOptions& options) {
  std::vector<int64_t> best_stats;
  double best_f = -1.0;
  for (const auto& ref : refs) {
    std::vector<int64_t> stats;
    for (size_t k = 0; k < hyp.size(); ++k) {
      int64_t match = 0, hyp_count = 0, ref_count = 0;
      for (const auto& [gram, count] : hyp[k]) {
        hyp_count += count;
        auto it = ref[k].find(gram);
        if (it != ref[k].end()) match += std::min(count, it->second);
      }
      for (const auto& item : ref[k]) ref_count += item.second;
      stats.push_back(ref[k].empty() ? 0 : hyp_count);
      stats.push_back(ref_count);
      stats.push_back(match);
    }
    const double f = f_score(stats, options);
    if (f > best_f) {
      best_f = f;
      best_stats = std::move(stats);
    }
  }
  return best_stats;
}

}  // namespace

ChrfScore chrf_corpus(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& references, const ChrfOptions& options) {
  if (options.char_order < 0 || options.word_order < 0 || options.char_order + options.word_order < 1) {
    fail("chrF needs char_order + word_order >= 1");
  }
  if (hypotheses.empty()) fail("chrF needs at least one hypothesis");
  if (hypotheses.size() != references.size()) {
    fail("chrF: " + std::to_string(hypotheses.size()) + " hypotheses but " +
         std::to_string(references.size()) + " reference sets");
  }
  const size_t order = static_cast<size_t>(options.char_order + options.word_order);
  std::vector<int64_t> totals(3 * order, 0);
  std::set<size_t> num_refs;
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    if (references[i].empty()) fail("chrF: segment " + std::to_string(i + 1) + " has no reference");
    num_refs.insert(references[i].size());
    std::vector<std::vector<Counter>> refs;
    for (const auto& ref : references[i]) refs.push_back(all_ngrams(ref, options));
    const auto stats = segment_statistics(all_ngrams(hypotheses[i], options), refs, options);
    for (size_t k = 0; k < totals.size(); ++k) totals[k] += stats[k];
  }
  ChrfScore out;
  out.score = f_score(totals, options);
  out.name = "chrF" + std::to_string(options.beta) + std::string(options.word_order, '+');
  const std::string nrefs = num_refs.size() == 1 ? std::to_string(*num_refs.begin()) : "var";
  out.signature = "nrefs:" + nrefs + "|case:" + (options.lowercase ? "lc" : "mixed") +
                  "|eff:" + (options.eps_smoothing ? "no" : "yes") +
                  "|nc:" + std::to_string(options.char_order) + "|nw:" + std::to_string(options.word_order) +
                  "|space:" + (options.whitespace ? "yes" : "no") + "|version:" + kSacrebleuVersion;
  return out;
}

ChrfScore chrf_sentence(const std::string& hypothesis, const std::vector<std::string>& references,
                        const ChrfOptions& options) {
  return chrf_corpus({hypothesis}, {references}, options);
}

}  // namespace qlora::eval
