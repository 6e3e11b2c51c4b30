// BLEU equal to sacrebleu 2.6.0's BLEU (metrics/bleu.py): corpus_score with its defaults (13a tokenizer,
// 'exp' smoothing, max n-gram order 4, effective order off, mixed case) and sentence_bleu (the same
// with effective order on). Per segment: clipped n-gram matches against the max counts over its
// references and the closest reference length (ties to the shorter); corpus statistics are summed,
// then brevity penalty × geometric mean of the precisions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qlora/core/jsonl.h"

namespace qlora::eval {

// The sacrebleu release whose behaviour and signature format this reproduces.
inline constexpr const char* kSacrebleuVersion = "2.6.0";

struct BleuOptions {
  std::string tokenize = "13a";        // 13a or none (whitespace split only)
  std::string smooth_method = "exp";   // exp, floor, add-k or none
  std::optional<double> smooth_value;  // floor: 0.1, add-k: 1 when unset
  bool lowercase = false;              // Python str.lower() before tokenizing
  bool effective_order = false;        // average only over orders with n-grams (sentence BLEU)
  int max_ngram_order = 4;
};

// sentence_bleu's options: the defaults with effective_order on.
BleuOptions sentence_bleu_options();

struct BleuScore {
  double score = 0.0;              // 0..100
  std::vector<int64_t> counts;     // matched n-grams per order (before add-k smoothing)
  std::vector<int64_t> totals;     // hypothesis n-grams per order
  std::vector<double> precisions;  // per order, 0..100, after smoothing
  double bp = 1.0;                 // brevity penalty
  int64_t sys_len = 0;             // hypothesis tokens
  int64_t ref_len = 0;             // closest-reference tokens
  std::string signature;           // e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
  Json to_json() const;
};

// corpus_score: references[i] are the references of hypotheses[i] (any number >= 1; a varying
// number gives "nrefs:var" as sacrebleu does with None entries). Errors: no hypotheses, a size
// mismatch, a segment without references, unknown tokenizer or smoothing.
BleuScore bleu_corpus(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& references,
                      const BleuOptions& options = {});

// sentence_score of one hypothesis (pass sentence_bleu_options() for sacrebleu.sentence_bleu).
BleuScore bleu_sentence(const std::string& hypothesis, const std::vector<std::string>& references,
                        const BleuOptions& options = sentence_bleu_options());

}  // namespace qlora::eval
