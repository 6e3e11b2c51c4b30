// ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum equal to Google's rouge-score 0.1.2 (RougeScorer.score and
// score_multi), per example: precision, recall and F in [0, 1].
//   rougeN     clipped n-gram overlap; P = overlap / max(pred n-grams, 1), R likewise.
//   rougeL     LCS of the whole token lists (0 when either is empty).
//   rougeLsum  summary-level union LCS over sentences = lines split on "\n" (empty lines dropped),
//              with rouge-score's clipped hit counting (split_summaries=False).
// Corpus figures are the plain mean of the per-example values, not rouge-score's BootstrapAggregator
// (whose "mid" is a median of unseeded resamples, so it is not reproducible).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "qlora/core/jsonl.h"

namespace qlora::eval {

enum class RougeTokenizer {
  default_ascii,  // rouge-score's DefaultTokenizer: [a-z0-9] words; drops non-ASCII letters
  unicode,        // qlora's: NFC + case folding, L*/N*/M* words; for Vietnamese; never stems
};

// "default" / "unicode"; anything else is an Error.
RougeTokenizer parse_rouge_tokenizer(const std::string& name);
const char* rouge_tokenizer_name(RougeTokenizer tokenizer);

struct RougeOptions {
  RougeTokenizer tokenizer = RougeTokenizer::default_ascii;
  // Porter stemming of words longer than 3 characters (default tokenizer only). On by default, as
  // most published summarisation numbers use RougeScorer(..., use_stemmer=True); rouge-score's and
  // Hugging Face evaluate's own default is False.
  bool use_stemmer = true;
};

struct RougeScore {
  double precision = 0.0;
  double recall = 0.0;
  double fmeasure = 0.0;
};

struct RougeScores {
  RougeScore rouge1, rouge2, rougeL, rougeLsum;
};

// The tokens the scorer compares, for `options`.
std::vector<std::string> rouge_tokenize(std::string_view text, const RougeOptions& options);

// RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"]).score(target, prediction).
RougeScores rouge_score(std::string_view target, std::string_view prediction, const RougeOptions& options);

// score_multi: per rouge type, the scores of the first target with the highest F. Error when
// `targets` is empty.
RougeScores rouge_score_multi(const std::vector<std::string>& targets, std::string_view prediction,
                              const RougeOptions& options);

struct RougeCorpusResult {
  RougeScores mean;                   // plain mean over examples of P, R and F
  std::vector<RougeScores> examples;  // per example, in input order
  // {"rouge1": F×100, ..., "rouge1_precision": P×100, "rouge1_recall": R×100, ..., "examples": n,
  //  "tokenizer", "use_stemmer"}.
  Json to_json(const RougeOptions& options) const;
};

// Scores each prediction against its references (score_multi when there are several). Errors: no
// examples, a size mismatch, an example without references.
RougeCorpusResult rouge_corpus(const std::vector<std::string>& predictions,
                               const std::vector<std::vector<std::string>>& references,
                               const RougeOptions& options);

}  // namespace qlora::eval
