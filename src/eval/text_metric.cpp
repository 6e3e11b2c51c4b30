#include "qlora/eval/text_metric.h"

#include <fstream>

#include "qlora/core/error.h"
#include "qlora/core/suggest.h"
#include "qlora/core/unicode.h"

namespace qlora::eval {

namespace {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_at(path, -1, "cannot open file");
  std::vector<std::string> lines;
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!is_valid_utf8(line)) fail_at(path, number, "not valid UTF-8");
    lines.push_back(std::move(line));
  }
  if (lines.empty()) fail_at(path, -1, "the file is empty (expected one segment per line)");
  return lines;
}

void check_counts(const std::string& predictions_path, size_t predictions, const std::string& references_path,
                  size_t references, const char* unit) {
  if (predictions != references) {
    fail(predictions_path + " has " + std::to_string(predictions) + " " + unit + " but " + references_path +
         " has " + std::to_string(references) + "; they must match one to one");
  }
}

const Json& require_field(const Json& record, const std::string& field, const std::string& path,
                          int64_t line) {
  auto it = record.find(field);
  if (it != record.end()) return *it;
  std::vector<std::string> present;
  for (const auto& item : record.items()) present.push_back(item.key());
  fail_at(path, line, "missing field '" + field + "'" + did_you_mean(field, present));
}

std::string string_field(const Json& record, const std::string& field, const std::string& path,
                         int64_t line) {
  const Json& value = require_field(record, field, path, line);
  if (!value.is_string()) {
    fail_at(path, line, "field '" + field + "' must be a string, got " + std::string(value.type_name()));
  }
  return value.get<std::string>();
}

// A string, or a non-empty list of strings (several references).
std::vector<std::string> references_field(const Json& record, const std::string& field,
                                          const std::string& path, int64_t line) {
  const Json& value = require_field(record, field, path, line);
  if (value.is_string()) return {value.get<std::string>()};
  if (value.is_array() && !value.empty()) {
    std::vector<std::string> refs;
    for (const auto& item : value) {
      if (!item.is_string()) fail_at(path, line, "field '" + field + "' must hold strings only");
      refs.push_back(item.get<std::string>());
    }
    return refs;
  }
  fail_at(path, line,
          "field '" + field + "' must be a string or a non-empty list of strings, got " +
              (value.is_array() ? std::string("an empty list") : std::string(value.type_name())));
}

}  // namespace

Json score_text_metric(const std::string& metric, const std::vector<std::string>& predictions,
                       const std::vector<std::vector<std::string>>& references,
                       const TextMetricOptions& options) {
  Json out;
  out["metric"] = metric;
  out["examples"] = predictions.size();
  if (metric == "rouge") {
    out.update(rouge_corpus(predictions, references, options.rouge).to_json(options.rouge));
  } else if (metric == "bleu") {
    const auto score = bleu_corpus(predictions, references, options.bleu);
    out["bleu"] = score.score;
    out.update(score.to_json());
    out.erase("score");
  } else if (metric == "chrf") {
    const auto score = chrf_corpus(predictions, references, options.chrf);
    out["chrf"] = score.score;
    out["name"] = score.name;
    out["signature"] = score.signature;
  } else {
    fail("unknown text metric '" + metric + "'" + did_you_mean(metric, {"rouge", "bleu", "chrf"}) +
         " (expected rouge, bleu or chrf)");
  }
  return out;
}

TextMetricInputs read_text_metric_lines(const std::string& predictions_path,
                                        const std::vector<std::string>& reference_paths) {
  if (reference_paths.empty()) fail("text metrics need at least one --references file");
  TextMetricInputs inputs;
  inputs.predictions = read_lines(predictions_path);
  inputs.references.resize(inputs.predictions.size());
  for (const auto& path : reference_paths) {
    auto lines = read_lines(path);
    check_counts(predictions_path, inputs.predictions.size(), path, lines.size(), "lines");
    for (size_t i = 0; i < lines.size(); ++i) inputs.references[i].push_back(std::move(lines[i]));
  }
  return inputs;
}

TextMetricInputs read_text_metric_jsonl(const std::string& predictions_path,
                                        const std::vector<std::string>& reference_paths,
                                        const std::string& prediction_field,
                                        const std::string& reference_field) {
  TextMetricInputs inputs;
  const bool references_inline = reference_paths.empty();
  for_each_jsonl(predictions_path, [&](const Json& record, int64_t line) {
    inputs.predictions.push_back(string_field(record, prediction_field, predictions_path, line));
    if (references_inline)
      inputs.references.push_back(references_field(record, reference_field, predictions_path, line));
  });
  if (inputs.predictions.empty()) fail_at(predictions_path, -1, "no records");
  if (references_inline) return inputs;
  inputs.references.resize(inputs.predictions.size());
  for (const auto& path : reference_paths) {
    size_t count = 0;
    for_each_jsonl(path, [&](const Json& record, int64_t line) {
      auto refs = references_field(record, reference_field, path, line);
      if (count < inputs.references.size()) {
        for (auto& ref : refs) inputs.references[count].push_back(std::move(ref));
      }
      ++count;
    });
    check_counts(predictions_path, inputs.predictions.size(), path, count, "records");
  }
  return inputs;
}

}  // namespace qlora::eval
