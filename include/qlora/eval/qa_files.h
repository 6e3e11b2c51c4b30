// Readers for the files `qlora eval --metric em_f1` scores. Every problem is an Error naming
// FILE:LINE (a malformed line, a missing field, a wrong type, a duplicate id).
#pragma once

#include <string>
#include <vector>

#include "qlora/eval/squad_metric.h"

namespace qlora::eval {

// Predictions JSONL, one {"id": str, "prediction_text": str, "no_answer_probability"?: number} per
// line, in the order kept for tie-breaking in best-threshold search. Other keys are ignored. An
// empty file gives no predictions (every question then counts as missing).
std::vector<QaPrediction> read_qa_predictions(const std::string& path);

// References from MRC JSONL (docs/DATA_FORMATS.md §1): "id" (str), "answers" (array of objects
// with a string "text"), optional "is_impossible" (bool, false when absent; true requires empty
// "answers"). Other fields are ignored. A file without records is an Error.
std::vector<QaReference> read_mrc_references(const std::string& path);

}  // namespace qlora::eval
