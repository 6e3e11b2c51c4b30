#include "qlora/qa/features.h"

#include <unordered_set>

#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"
#include "qlora/core/unicode.h"

namespace qlora::qa {
namespace {

// Python 3 str.isspace() (bidirectional class WS, B or S, or category Zs).
bool python_is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// One window before padding: the tokenizer's pair encoding of (question, context slice).
struct Window {
  std::vector<int64_t> ids;
  std::vector<int64_t> type_ids;
  std::vector<CharSpan> offsets;
  std::vector<int> sequence_ids;  // 0 question, 1 context, -1 special or padding
};

std::string record_name(const QaExample& example) { return "record \"" + example.id + "\""; }

void check_options(const Tokenizer& tokenizer, const QaFeatureOptions& options) {
  if (options.max_seq_length < 1)
    fail("max_seq_length must be positive, got " + std::to_string(options.max_seq_length));
  if (options.doc_stride < 0)
    fail("doc_stride must not be negative, got " + std::to_string(options.doc_stride));
  // tokenizers' Tokenizer::with_truncation rejects the settings before encoding anything.
  const int64_t effective = options.max_seq_length - tokenizer.num_special_tokens_to_add(false);
  if (effective < options.doc_stride) {
    fail("doc_stride " + std::to_string(options.doc_stride) + " is greater than the effective max length " +
         std::to_string(effective) + " (max_seq_length " + std::to_string(options.max_seq_length) + " - " +
         std::to_string(tokenizer.num_special_tokens_to_add(false)) + " special tokens)");
  }
  if (tokenizer.special_ids().pad < 0)
    fail("the tokenizer has no pad token; QA features are padded to max_seq_length");
}

// Start/stop token indices of the context windows: HF Encoding::truncate, direction right.
std::vector<std::pair<int64_t, int64_t>> window_ranges(int64_t n_context, int64_t width, int64_t stride) {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  const int64_t step = width - stride;
  for (int64_t start = 0; start < n_context; start += step) {
    const int64_t stop = std::min(start + width, n_context);
    ranges.emplace_back(start, stop);
    if (stop == n_context) break;
  }
  return ranges;
}

// The question (kept whole) with every context window, as tokenizer(q, c, truncation="only_second",
// max_length, stride, return_overflowing_tokens=True) returns them, unpadded.
std::vector<Window> encode_windows(const Tokenizer& tokenizer, const QaExample& example,
                                   const QaFeatureOptions& options) {
  const Encoding full = tokenizer.encode_pair(python_lstrip(example.question), example.context);
  const int64_t n = static_cast<int64_t>(full.ids.size());
  int64_t ctx_begin = n, ctx_end = n, n_question = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (full.sequence_ids[i] == 0) ++n_question;
    if (full.sequence_ids[i] != 1) continue;
    if (ctx_begin == n) {
      ctx_begin = i;
    } else if (ctx_end != i) {
      fail(record_name(example) + ": the tokenizer's pair template splits the context");
    }
    ctx_end = i + 1;
  }
  if (ctx_begin == n) ctx_begin = ctx_end = n;  // empty context: no context tokens
  const int64_t n_context = ctx_end - ctx_begin;

  auto slice = [&](int64_t begin, int64_t end, Window& w) {
    w.ids.insert(w.ids.end(), full.ids.begin() + begin, full.ids.begin() + end);
    w.type_ids.insert(w.type_ids.end(), full.token_type_ids.begin() + begin,
                      full.token_type_ids.begin() + end);
    w.offsets.insert(w.offsets.end(), full.offsets.begin() + begin, full.offsets.begin() + end);
    w.sequence_ids.insert(w.sequence_ids.end(), full.sequence_ids.begin() + begin,
                          full.sequence_ids.begin() + end);
  };
  if (n <= options.max_seq_length) {
    Window w;
    slice(0, n, w);
    return {w};
  }
  // truncate_encodings, OnlySecond: remove what exceeds max_length from the context alone.
  const int64_t to_remove = n - options.max_seq_length;
  const int64_t n_specials = n - n_question - n_context;
  if (n_context <= to_remove) {
    fail(record_name(example) + ": the question has " + std::to_string(n_question) + " tokens, which with " +
         std::to_string(n_specials) + " special tokens leaves no room for the context in max_seq_length " +
         std::to_string(options.max_seq_length) +
         " (HF: \"Sequence to truncate too short to respect the provided "
         "max_length\"); raise max_seq_length or shorten the question");
  }
  const int64_t width = n_context - to_remove;
  if (options.doc_stride >= width) {
    fail(record_name(example) + ": doc_stride " + std::to_string(options.doc_stride) +
         " must be smaller than the context window of " + std::to_string(width) + " tokens (max_seq_length " +
         std::to_string(options.max_seq_length) + " - " + std::to_string(n_question) + " question tokens - " +
         std::to_string(n_specials) + " special tokens); HF panics here");
  }
  std::vector<Window> windows;
  for (const auto& [start, stop] : window_ranges(n_context, width, options.doc_stride)) {
    Window w;
    slice(0, ctx_begin, w);
    slice(ctx_begin + start, ctx_begin + stop, w);
    slice(ctx_end, n, w);
    windows.push_back(std::move(w));
  }
  return windows;
}

// Pads the window to T in place and appends it to `inputs`, with its cls index.
void append_padded(const Tokenizer& tokenizer, Window& w, int64_t example_index, QaInputs& inputs) {
  const int64_t T = inputs.seq_len;
  const size_t n = w.ids.size();
  w.ids.resize(T, tokenizer.special_ids().pad);
  w.type_ids.resize(T, 0);
  w.offsets.resize(T, CharSpan{0, 0});
  w.sequence_ids.resize(T, -1);
  inputs.input_ids.insert(inputs.input_ids.end(), w.ids.begin(), w.ids.end());
  inputs.token_type_ids.insert(inputs.token_type_ids.end(), w.type_ids.begin(), w.type_ids.end());
  for (int64_t i = 0; i < T; ++i) inputs.attention_mask.push_back(static_cast<size_t>(i) < n ? 1 : 0);
  inputs.example_index.push_back(example_index);

  // run_qa: input_ids.index(cls_token_id), else the bos token, else 0.
  auto find = [&](int64_t id) -> int64_t {
    if (id < 0) return -1;
    for (int64_t i = 0; i < T; ++i) {
      if (w.ids[i] == id) return i;
    }
    return -1;
  };
  int64_t cls = find(tokenizer.special_ids().cls);
  if (cls < 0) cls = find(tokenizer.special_ids().bos);
  inputs.cls_index.push_back(cls < 0 ? 0 : cls);
}

// run_qa's label rule for one padded window (see features.h).
std::pair<int64_t, int64_t> answer_labels(const QaExample& example, const Window& w, int64_t cls_index) {
  if (example.answers.empty()) return {cls_index, cls_index};
  const int64_t start_char = example.answers[0].answer_start;
  const int64_t end_char = start_char + static_cast<int64_t>(utf8_length(example.answers[0].text));
  const int64_t T = static_cast<int64_t>(w.ids.size());
  int64_t s = 0;
  while (s < T && w.sequence_ids[s] != 1) ++s;
  int64_t e = T - 1;
  while (e >= 0 && w.sequence_ids[e] != 1) --e;
  if (s == T) fail(record_name(example) + ": has an answer but no context tokens");  // HF: IndexError
  if (!(w.offsets[s].first <= start_char && w.offsets[e].second >= end_char)) return {cls_index, cls_index};
  while (s < T && w.offsets[s].first <= start_char) ++s;
  while (e >= 0 && w.offsets[e].second >= end_char) --e;
  if (e < 0) fail(record_name(example) + ": the first answer is empty");  // HF would index offsets[-1]
  return {s - 1, e + 1};
}

}  // namespace

std::string python_lstrip(const std::string& text) {
  const std::vector<char32_t> cps = utf8_decode(text);
  size_t k = 0;
  while (k < cps.size() && python_is_space(cps[k])) ++k;
  if (k == 0) return text;
  return utf8_encode(std::vector<char32_t>(cps.begin() + static_cast<std::ptrdiff_t>(k), cps.end()));
}

QaTrainFeatures prepare_train_features(const Tokenizer& tokenizer, const std::vector<QaExample>& examples,
                                       const QaFeatureOptions& options) {
  check_options(tokenizer, options);
  QaTrainFeatures out;
  out.inputs.seq_len = options.max_seq_length;
  for (size_t k = 0; k < examples.size(); ++k) {
    for (Window& w : encode_windows(tokenizer, examples[k], options)) {
      append_padded(tokenizer, w, static_cast<int64_t>(k), out.inputs);
      const auto [start, end] = answer_labels(examples[k], w, out.inputs.cls_index.back());
      out.start_positions.push_back(start);
      out.end_positions.push_back(end);
    }
  }
  return out;
}

QaEvalFeatures prepare_validation_features(const Tokenizer& tokenizer, const std::vector<QaExample>& examples,
                                           const QaFeatureOptions& options) {
  check_options(tokenizer, options);
  QaEvalFeatures out;
  out.inputs.seq_len = options.max_seq_length;
  for (size_t k = 0; k < examples.size(); ++k) {
    for (Window& w : encode_windows(tokenizer, examples[k], options)) {
      append_padded(tokenizer, w, static_cast<int64_t>(k), out.inputs);
      out.example_ids.push_back(examples[k].id);
      std::vector<std::optional<CharSpan>> offsets(w.ids.size());
      for (size_t i = 0; i < w.ids.size(); ++i) {
        if (w.sequence_ids[i] == 1) offsets[i] = w.offsets[i];
      }
      out.offsets.push_back(std::move(offsets));
    }
  }
  return out;
}

std::vector<QaExample> read_qa_examples(const std::string& path) {
  std::vector<QaExample> examples;
  std::unordered_set<std::string> ids;
  for_each_jsonl(path, [&](const Json& record, int64_t line) {
    auto text = [&](const Json& object, const char* key, const std::string& where) -> std::string {
      if (!object.contains(key) || !object[key].is_string())
        fail_at(path, line, where + std::string(key) + ": expected a string");
      return object[key].get<std::string>();
    };
    QaExample ex;
    ex.id = text(record, "id", "");
    ex.context = text(record, "context", "");
    ex.question = text(record, "question", "");
    if (!ids.insert(ex.id).second) fail_at(path, line, "repeated id \"" + ex.id + "\"");
    if (!record.contains("answers") || !record["answers"].is_array())
      fail_at(path, line, "answers: expected an array");
    const int64_t context_length = static_cast<int64_t>(utf8_length(ex.context));
    for (size_t a = 0; a < record["answers"].size(); ++a) {
      const Json& answer = record["answers"][a];
      const std::string where = "answers[" + std::to_string(a) + "].";
      if (!answer.is_object()) fail_at(path, line, "answers[" + std::to_string(a) + "]: expected an object");
      QaAnswer qa_answer{text(answer, "text", where), 0};
      if (!answer.contains("answer_start") || !answer["answer_start"].is_number_integer()) {
        fail_at(path, line, where + "answer_start: expected an integer");
      }
      qa_answer.answer_start = answer["answer_start"].get<int64_t>();
      const int64_t length = static_cast<int64_t>(utf8_length(qa_answer.text));
      if (length == 0) fail_at(path, line, "record \"" + ex.id + "\": " + where + "text is empty");
      if (qa_answer.answer_start < 0 || qa_answer.answer_start + length > context_length ||
          utf8_substr(ex.context, qa_answer.answer_start, qa_answer.answer_start + length) !=
              qa_answer.text) {
        fail_at(path, line,
                "record \"" + ex.id + "\": " + where + "answer_start " +
                    std::to_string(qa_answer.answer_start) +
                    " does not point at its text in the context (code points; see qlora prepare)");
      }
      ex.answers.push_back(std::move(qa_answer));
    }
    if (record.contains("is_impossible")) {
      if (!record["is_impossible"].is_boolean()) fail_at(path, line, "is_impossible: expected true or false");
      ex.is_impossible = record["is_impossible"].get<bool>();
    }
    examples.push_back(std::move(ex));
  });
  return examples;
}

}  // namespace qlora::qa
