// A port of sacrebleu 2.6.0 metrics/bleu.py (BLEU.compute_bleu, _extract_reference_info,
// _compute_segment_statistics, _get_closest_ref_len) and the signature of metrics/base.py.
#include "qlora/eval/bleu.h"

#include <cmath>
#include <cstdio>
#include <set>
#include <unordered_map>

#include "qlora/core/error.h"
#include "qlora/core/unicode.h"
#include "qlora/eval/python_text.h"
#include "qlora/eval/text_tokenize.h"

namespace qlora::eval {

namespace {

// N-gram counts per order; an n-gram is its tokens joined by ' ' (tokens hold no whitespace).
using NgramCounts = std::vector<std::unordered_map<std::string, int64_t>>;

struct Segment {
  NgramCounts ngrams;
  int64_t length = 0;
};

std::string lower(const std::string& text) {
  const auto cps = utf8_decode(text);
  std::string out;
  for (char32_t c : python_lower(std::u32string(cps.begin(), cps.end()))) utf8_append(out, c);
  return out;
}

// _preprocess_segment: optional lower(), rstrip(), then the tokenizer.
std::string preprocess(const std::string& text, const BleuOptions& options) {
  const std::string stripped = python_rstrip(options.lowercase ? lower(text) : text);
  if (options.tokenize == "13a") return tokenize_13a(stripped);
  if (options.tokenize == "intl") return tokenize_intl(stripped);
  return stripped;
}

// extract_all_word_ngrams(line, 1, max_order).
Segment extract_ngrams(const std::string& line, int max_order) {
  const auto tokens = python_split_utf8(line);
  Segment segment;
  segment.ngrams.resize(max_order);
  segment.length = static_cast<int64_t>(tokens.size());
  for (int n = 1; n <= max_order; ++n) {
    for (size_t i = 0; i + n <= tokens.size(); ++i) {
      std::string gram = tokens[i];
      for (int k = 1; k < n; ++k) gram += ' ' + tokens[i + k];
      ++segment.ngrams[n - 1][gram];
    }
  }
  return segment;
}

int64_t closest_ref_len(int64_t hyp_len, const std::vector<int64_t>& ref_lens) {
  int64_t closest_diff = -1, closest_len = -1;
  for (int64_t ref_len : ref_lens) {
    const int64_t diff = std::llabs(hyp_len - ref_len);
    if (closest_diff == -1 || diff < closest_diff) {
      closest_diff = diff;
      closest_len = ref_len;
    } else if (diff == closest_diff && ref_len < closest_len) {
      closest_len = ref_len;
    }
  }
  return closest_len;
}

// utils.my_log: log with log(0) floored.
double my_log(double x) { return x == 0.0 ? -9999999999.0 : std::log(x); }

void check_options(const BleuOptions& options) {
  if (options.tokenize != "13a" && options.tokenize != "intl" && options.tokenize != "none") {
    fail("BLEU tokenizer '" + options.tokenize + "' is not supported (13a, intl or none)");
  }
  const auto& m = options.smooth_method;
  if (m != "exp" && m != "floor" && m != "add-k" && m != "none") {
    fail("unknown BLEU smoothing '" + m + "' (exp, floor, add-k or none)");
  }
  if (options.max_ngram_order < 1) fail("BLEU max n-gram order must be at least 1");
}

std::string signature(const BleuOptions& options, const std::string& nrefs) {
  std::string smooth = options.smooth_method;
  if (smooth == "floor" || smooth == "add-k") {
    char buffer[32];
    std::snprintf(buffer, sizeof(buffer), "[%.2f]",
                  options.smooth_value.value_or(smooth == "floor" ? 0.1 : 1.0));
    smooth += buffer;
  }
  return "nrefs:" + nrefs + "|case:" + (options.lowercase ? "lc" : "mixed") +
         "|eff:" + (options.effective_order ? "yes" : "no") + "|tok:" + options.tokenize +
         "|smooth:" + smooth + "|version:" + kSacrebleuVersion;
}

// BLEU.compute_bleu on summed statistics.
BleuScore compute_bleu(std::vector<int64_t> correct, std::vector<int64_t> total, int64_t sys_len,
                       int64_t ref_len, const BleuOptions& options) {
  const int order = options.max_ngram_order;
  BleuScore out;
  out.counts = correct;
  out.totals = total;
  out.sys_len = sys_len;
  out.ref_len = ref_len;
  out.precisions.assign(order, 0.0);
  if (sys_len < ref_len) out.bp = sys_len > 0 ? std::exp(1.0 - static_cast<double>(ref_len) / sys_len) : 0.0;
  bool any_correct = false;
  for (int64_t c : correct) any_correct = any_correct || c != 0;
  if (!any_correct) return out;

  const std::string& method = options.smooth_method;
  const double smooth_value = options.smooth_value.value_or(method == "floor" ? 0.1 : 1.0);
  std::vector<double> c(correct.begin(), correct.end()), t(total.begin(), total.end());
  double smooth_mteval = 1.0;
  int eff_order = order;
  for (int n = 1; n <= order; ++n) {
    if (method == "add-k" && n > 1) {
      c[n - 1] += smooth_value;
      t[n - 1] += smooth_value;
    }
    if (t[n - 1] == 0) break;
    if (options.effective_order) eff_order = n;
    if (c[n - 1] == 0) {
      if (method == "exp") {
        smooth_mteval *= 2;
        out.precisions[n - 1] = 100. / (smooth_mteval * t[n - 1]);
      } else if (method == "floor") {
        out.precisions[n - 1] = 100. * smooth_value / t[n - 1];
      }
    } else {
      out.precisions[n - 1] = 100. * c[n - 1] / t[n - 1];
    }
  }
  double log_sum = 0.0;  // Python 3.11 sum(): left to right
  for (int n = 0; n < eff_order; ++n) log_sum += my_log(out.precisions[n]);
  out.score = out.bp * std::exp(log_sum / eff_order);
  return out;
}

}  // namespace

BleuOptions sentence_bleu_options() {
  BleuOptions options;
  options.effective_order = true;
  return options;
}

BleuScore bleu_corpus(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& references, const BleuOptions& options) {
  check_options(options);
  if (hypotheses.empty()) fail("BLEU needs at least one hypothesis");
  if (hypotheses.size() != references.size()) {
    fail("BLEU: " + std::to_string(hypotheses.size()) + " hypotheses but " +
         std::to_string(references.size()) + " reference sets");
  }
  const int order = options.max_ngram_order;
  std::vector<int64_t> correct(order, 0), total(order, 0);
  int64_t sys_len = 0, ref_len = 0;
  std::set<size_t> num_refs;
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    const auto& refs = references[i];
    if (refs.empty()) fail("BLEU: segment " + std::to_string(i + 1) + " has no reference");
    num_refs.insert(refs.size());
    // _extract_reference_info: max count of each n-gram over the references, and their lengths.
    NgramCounts ref_ngrams(order);
    std::vector<int64_t> ref_lens;
    for (const auto& ref : refs) {
      const Segment seg = extract_ngrams(preprocess(ref, options), order);
      ref_lens.push_back(seg.length);
      for (int n = 0; n < order; ++n) {
        for (const auto& [gram, count] : seg.ngrams[n]) {
          int64_t& best = ref_ngrams[n][gram];
          best = std::max(best, count);
        }
      }
    }
    const Segment hyp = extract_ngrams(preprocess(hypotheses[i], options), order);
    sys_len += hyp.length;
    ref_len += closest_ref_len(hyp.length, ref_lens);
    for (int n = 0; n < order; ++n) {
      for (const auto& [gram, count] : hyp.ngrams[n]) {
        total[n] += count;
        auto it = ref_ngrams[n].find(gram);
        if (it != ref_ngrams[n].end()) correct[n] += std::min(count, it->second);
      }
    }
  }
  BleuScore score = compute_bleu(correct, total, sys_len, ref_len, options);
  score.signature = signature(options, num_refs.size() == 1 ? std::to_string(*num_refs.begin()) : "var");
  return score;
}

BleuScore bleu_sentence(const std::string& hypothesis, const std::vector<std::string>& references,
                        const BleuOptions& options) {
  return bleu_corpus({hypothesis}, {references}, options);
}

Json BleuScore::to_json() const {
  Json out;
  out["score"] = score;
  out["precisions"] = precisions;
  out["bp"] = bp;
  out["sys_len"] = sys_len;
  out["ref_len"] = ref_len;
  out["counts"] = counts;
  out["totals"] = totals;
  out["signature"] = signature;
  return out;
}

}  // namespace qlora::eval
