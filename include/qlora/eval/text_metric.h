// One entry point for the generation metrics (ROUGE, BLEU, chrF) and the readers for their inputs,
// shared by `qlora eval --metric rouge|bleu|chrf` and the model-driven evaluation path.
#pragma once

#include <string>
#include <vector>

#include "qlora/core/jsonl.h"
#include "qlora/eval/bleu.h"
#include "qlora/eval/chrf.h"
#include "qlora/eval/rouge.h"

namespace qlora::eval {

struct TextMetricOptions {
  RougeOptions rouge;
  BleuOptions bleu;  // corpus BLEU: sacrebleu BLEU() defaults
  ChrfOptions chrf;  // word_order 2 for chrF++
};

// Scores predictions[i] against references[i] (one or more strings each) with `metric` = rouge,
// bleu or chrf. Returns {"metric", "examples", ...}:
//   rouge: rouge1, rouge2, rougeL, rougeLsum (mean F ×100), <type>_precision, <type>_recall,
//          tokenizer, use_stemmer
//   bleu:  bleu, precisions, bp, sys_len, ref_len, counts, totals, signature
//   chrf:  chrf, name ("chrF2" or "chrF2++"), signature
// Errors: unknown metric, empty input, a size mismatch, an example without references.
Json score_text_metric(const std::string& metric, const std::vector<std::string>& predictions,
                       const std::vector<std::vector<std::string>>& references,
                       const TextMetricOptions& options);

struct TextMetricInputs {
  std::vector<std::string> predictions;
  std::vector<std::vector<std::string>> references;  // per example, one entry per reference source
};

// Plain text, sacrebleu's convention: one segment per line ("\n" or "\r\n"), one file per reference
// set; every file must have as many lines as the predictions (else an Error naming both files).
TextMetricInputs read_text_metric_lines(const std::string& predictions_path,
                                        const std::vector<std::string>& reference_paths);

// JSONL: `prediction_field` (a string) from each predictions record and `reference_field` (a string,
// or a list of strings = several references) from each record of every reference file, in line
// order. With no reference files, both fields come from the predictions file. Errors name
// FILE:LINE (malformed JSON, missing field with a did-you-mean, wrong type) or both files (counts).
TextMetricInputs read_text_metric_jsonl(const std::string& predictions_path,
                                        const std::vector<std::string>& reference_paths,
                                        const std::string& prediction_field,
                                        const std::string& reference_field);

}  // namespace qlora::eval
