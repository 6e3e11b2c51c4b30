// chrF and chrF++ equal to sacrebleu 2.6.0's CHRF (metrics/chrf.py): character n-grams (orders 1..6,
// code points, whitespace removed) and optionally word n-grams (word_order 2 = chrF++), F-beta with
// beta 2 over the precision and recall averaged across the orders that occur (effective order, not
// eps smoothing). Per segment, the reference with the best segment F supplies the statistics; the
// corpus score uses the summed statistics.
#pragma once

#include <string>
#include <vector>

namespace qlora::eval {

struct ChrfOptions {
  int char_order = 6;
  int word_order = 0;  // 2 gives chrF++
  int beta = 2;
  bool lowercase = false;      // Python str.lower()
  bool whitespace = false;     // keep whitespace inside character n-grams
  bool eps_smoothing = false;  // chrF++.py / NLTK / Moses style averaging instead of effective order
};

struct ChrfScore {
  double score = 0.0;     // 0..100
  std::string name;       // "chrF2", "chrF2++"
  std::string signature;  // "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"
};

// corpus_score; references[i] are the references of hypotheses[i]. Errors as bleu_corpus.
ChrfScore chrf_corpus(const std::vector<std::string>& hypotheses,
                      const std::vector<std::vector<std::string>>& references,
                      const ChrfOptions& options = {});

ChrfScore chrf_sentence(const std::string& hypothesis, const std::vector<std::string>& references,
                        const ChrfOptions& options = {});

}  // namespace qlora::eval
