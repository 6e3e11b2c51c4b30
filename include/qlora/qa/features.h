// Extractive-QA features exactly as Hugging Face run_qa.py makes them (prepare_train_features /
// prepare_validation_features): the question is kept whole, the context is cut into overlapping
// windows of tokens, every window is padded to max_seq_length. Model-agnostic: no torch here; the
// flat [N, T] row-major arrays go to tensors with one from_blob each.
//
// Windows follow huggingface/tokenizers' only_second truncation (tokenizers/src/utils/truncation.rs,
// Encoding::truncate): with W = max_seq_length - specials - question tokens context tokens per window,
// windows start at 0, W - doc_stride, 2 (W - doc_stride), ... and the first window that reaches the
// end of the context is the last, so consecutive windows share doc_stride tokens. tokenizers 0.23.1+
// stops tokenizing a truncated sequence after max_length tokens (huggingface/tokenizers#2091) and so
// drops the windows past that; qlora keeps every window, as tokenizers <= 0.22.2 and run_qa intend.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qlora/tokenizer/tokenizer.h"

namespace qlora::qa {

// One reference answer: `text` starts at code point `answer_start` of the context.
struct QaAnswer {
  std::string text;
  int64_t answer_start = 0;
};

// One MRC record (docs/DATA_FORMATS.md §1); only the fields QA features use.
struct QaExample {
  std::string id;
  std::string context;
  std::string question;
  std::vector<QaAnswer> answers;  // empty: unanswerable (labels point at the cls token)
  bool is_impossible = false;     // informational; run_qa decides by answers being empty
};

// Reads MRC JSONL. Errors name FILE:LINE: a missing or mistyped field, an answer outside its
// context, a repeated id.
std::vector<QaExample> read_qa_examples(const std::string& path);

struct QaFeatureOptions {
  int64_t max_seq_length = 384;  // T: tokens per feature, padded (run_qa: min(384, model_max_length))
  int64_t doc_stride = 128;      // tokens shared by consecutive context windows
};

// [begin, end) in code points of the context: HF offset_mapping of a context token.
using CharSpan = std::pair<int64_t, int64_t>;

// The rows every feature has. N features, each of T tokens; [N, T] arrays are row-major.
struct QaInputs {
  int64_t seq_len = 0;                  // T
  std::vector<int64_t> input_ids;       // [N, T], padded with the pad id
  std::vector<int64_t> attention_mask;  // [N, T], 0 on padding
  std::vector<int64_t> token_type_ids;  // [N, T], as the tokenizer gives (all 0 for XLM-R)
  std::vector<int64_t> example_index;   // [N], index into the examples (HF overflow_to_sample_mapping)
  std::vector<int64_t> cls_index;       // [N], the cls (else bos, else 0) position: the "no answer" label

  int64_t size() const { return static_cast<int64_t>(example_index.size()); }
};

// prepare_train_features: inputs plus start/end token labels.
struct QaTrainFeatures {
  QaInputs inputs;
  std::vector<int64_t> start_positions;  // [N]
  std::vector<int64_t> end_positions;    // [N]
};

// prepare_validation_features: inputs plus what post-processing needs.
struct QaEvalFeatures {
  QaInputs inputs;
  std::vector<std::string> example_ids;                       // [N]
  std::vector<std::vector<std::optional<CharSpan>>> offsets;  // [N][T]; nullopt off the context (HF None)
};

// Labels, per window, with the FIRST answer (HF's rule): no answer, or an answer not entirely inside
// the window's context tokens -> start = end = cls_index. Otherwise the start walks right from the
// first context token while offset.begin <= start_char and takes the token before; the end walks left
// from the last context token while offset.end >= end_char and takes the token after. As in HF, the
// start walk does not stop at the end of the context: when the answer starts in the window's last
// context token it runs over the closing specials and padding (offsets (0, 0)) and the label becomes
// T - 1. Reproduced because models fine-tuned with run_qa learnt exactly these labels.
//
// Errors name the record id: a question that leaves no room for context tokens (HF: "Sequence to
// truncate too short"), doc_stride >= the window (HF panics), doc_stride > max_seq_length - the
// single-sequence specials (HF rejects the truncation settings), a tokenizer without a pad token.
QaTrainFeatures prepare_train_features(const Tokenizer& tokenizer, const std::vector<QaExample>& examples,
                                       const QaFeatureOptions& options);

QaEvalFeatures prepare_validation_features(const Tokenizer& tokenizer, const std::vector<QaExample>& examples,
                                           const QaFeatureOptions& options);

// Python str.lstrip(): removes leading characters for which str.isspace() is true (ASCII
// whitespace, U+001C..U+001F, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F,
// U+205F, U+3000). run_qa does this to every question.
std::string python_lstrip(const std::string& text);

}  // namespace qlora::qa
