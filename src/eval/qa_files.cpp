#include "qlora/eval/qa_files.h"

#include <unordered_map>

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"
#include "qlora/core/suggest.h"

namespace qlora::eval {

namespace {

struct Line {
  const std::string& path;
  int64_t number;
  [[noreturn]] void fail(const std::string& message) const { fail_at(path, number, message); }
};

// The record's field `key`, or an Error; a near-miss key in the record is named as a likely typo.
const Json& require(const Json& record, const std::string& key, const Line& line) {
  auto it = record.find(key);
  if (it != record.end()) return *it;
  std::vector<std::string> present;
  for (const auto& item : record.items()) present.push_back(item.key());
  const std::string near = nearest(key, present);
  line.fail("missing field '" + key + "'" + (near.empty() ? "" : " (is '" + near + "' a typo?)"));
}

std::string require_string(const Json& record, const std::string& key, const Line& line) {
  const Json& value = require(record, key, line);
  if (!value.is_string()) {
    line.fail("field '" + key + "' must be a string, got " + std::string(value.type_name()));
  }
  return value.get<std::string>();
}

// Remembers the line of each id; a second one is an Error naming both lines.
class IdLines {
 public:
  void add(const std::string& id, const Line& line) {
    auto [it, inserted] = lines_.emplace(id, line.number);
    if (!inserted) line.fail("duplicate id '" + id + "' (first on line " + std::to_string(it->second) + ")");
  }

 private:
  std::unordered_map<std::string, int64_t> lines_;
};

// A whole SQuAD JSON document ({"version", "data": [...]}) given where MRC JSONL is expected: say how to
// convert it rather than report its first line as malformed JSONL.
void reject_squad_json(const std::string& path) {
  const std::string text = read_file(path);
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos || text[first] != '{') return;
  Json whole;
  try {
    whole = Json::parse(text);
  } catch (const Json::exception&) {
    return;  // JSONL (several objects) or malformed: for_each_jsonl reports it by line
  }
  if (whole.is_object() && whole.contains("data") && whole["data"].is_array()) {
    fail(path +
         ": this is a SQuAD JSON file, not MRC JSONL; convert it first: qlora prepare squad_to_mrc --input " +
         path + " --output references.jsonl");
  }
}

}  // namespace

std::vector<QaPrediction> read_qa_predictions(const std::string& path) {
  std::vector<QaPrediction> predictions;
  IdLines ids;
  for_each_jsonl(path, [&](const Json& record, int64_t number) {
    const Line line{path, number};
    QaPrediction prediction;
    prediction.id = require_string(record, "id", line);
    prediction.text = require_string(record, "prediction_text", line);
    auto prob = record.find("no_answer_probability");
    if (prob != record.end()) {
      if (!prob->is_number()) {
        line.fail("field 'no_answer_probability' must be a number, got " + std::string(prob->type_name()));
      }
      prediction.no_answer_probability = prob->get<double>();
    }
    ids.add(prediction.id, line);
    predictions.push_back(std::move(prediction));
  });
  return predictions;
}

std::vector<QaReference> read_mrc_references(const std::string& path) {
  std::vector<QaReference> references;
  IdLines ids;
  reject_squad_json(path);
  for_each_jsonl(path, [&](const Json& record, int64_t number) {
    const Line line{path, number};
    QaReference reference;
    reference.id = require_string(record, "id", line);
    const Json& answers = require(record, "answers", line);
    if (answers.is_object() && answers.contains("text")) {
      // Hugging Face datasets' squad layout: answers = {"text": [...], "answer_start": [...]}.
      const Json& texts = answers["text"];
      if (!texts.is_array()) line.fail("answers.text must be an array (datasets' squad layout)");
      for (size_t i = 0; i < texts.size(); ++i) {
        if (!texts[i].is_string())
          line.fail("answers.text[" + std::to_string(i) + "] must be a string, got " + texts[i].type_name());
        reference.answers.push_back(texts[i].get<std::string>());
      }
    } else if (!answers.is_array()) {
      line.fail(
          "field 'answers' must be an array of {\"text\", \"answer_start\"} (MRC JSONL) or an object "
          "{\"text\": [...], \"answer_start\": [...]} (datasets' squad layout), got " +
          std::string(answers.type_name()));
    }
    for (size_t i = 0; answers.is_array() && i < answers.size(); ++i) {
      const std::string where = "answers[" + std::to_string(i) + "]";
      if (!answers[i].is_object()) line.fail(where + " must be an object, got " + answers[i].type_name());
      auto text = answers[i].find("text");
      if (text == answers[i].end()) line.fail(where + " has no 'text'");
      if (!text->is_string()) line.fail(where + ".text must be a string, got " + text->type_name());
      reference.answers.push_back(text->get<std::string>());
    }
    auto impossible = record.find("is_impossible");
    if (impossible != record.end()) {
      if (!impossible->is_boolean()) {
        line.fail("field 'is_impossible' must be true or false, got " + std::string(impossible->type_name()));
      }
      reference.is_impossible = impossible->get<bool>();
      if (reference.is_impossible && !reference.answers.empty()) {
        line.fail("question '" + reference.id + "' is_impossible but has answers");
      }
    }
    ids.add(reference.id, line);
    references.push_back(std::move(reference));
  });
  if (references.empty()) fail(path + ": no reference questions");
  return references;
}

}  // namespace qlora::eval
