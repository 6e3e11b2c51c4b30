#include "qlora/data/squad.h"

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/suggest.h"
#include "qlora/core/unicode.h"
#include "qlora/data/span.h"

namespace qlora::data {

OffsetMode parse_offset_mode(const std::string& name) {
  if (name == "drop") return OffsetMode::drop;
  if (name == "fix_offsets" || name == "fix-offsets") return OffsetMode::fix_offsets;
  if (name == "strict") return OffsetMode::strict;
  fail("unknown offset mode '" + name + "': expected drop, fix_offsets or strict" +
       did_you_mean(name, {"drop", "fix_offsets", "strict"}));
}

const char* offset_mode_name(OffsetMode mode) {
  switch (mode) {
    case OffsetMode::drop:
      return "drop";
    case OffsetMode::fix_offsets:
      return "fix_offsets";
    case OffsetMode::strict:
      return "strict";
  }
  return "?";
}

Json SquadToMrcResult::to_json() const {
  const SquadCounts& c = counts;
  Json out;
  out["counts"] = {{"articles", c.articles},
                   {"paragraphs", c.paragraphs},
                   {"questions", c.questions},
                   {"answerable", c.answerable},
                   {"impossible", c.impossible},
                   {"answers_checked", c.answers_checked},
                   {"mismatched_offsets", c.mismatched_offsets},
                   {"empty_answers", c.empty_answers},
                   {"fixed", c.fixed},
                   {"answers_dropped", c.answers_dropped},
                   {"records_dropped", c.records_dropped},
                   {"ids_repaired", c.ids_repaired},
                   {"written", c.written}};
  warnings.append_to(out);
  return out;
}

namespace {

std::string in_quotes(const std::string& text) { return preview(Json(text)); }

// Walks one SQuAD document after another, keeping the state that spans files (ids, counts).
class SquadConverter {
 public:
  explicit SquadConverter(const SquadToMrcOptions& options)
      : options_(options), result_{{}, Warnings(options.max_warnings)} {}

  void add_file(const std::string& file) {
    file_ = file;
    file_questions_ = 0;
    const Json doc = read_json_file(file);
    if (!doc.is_object()) fail(file + ": expected a SQuAD JSON object, got " + doc.type_name());
    const Json& data = field(doc, "data", "", Json::value_t::array);
    for (size_t a = 0; a < data.size(); ++a) add_article(data[a], "data[" + std::to_string(a) + "]");
  }

  MrcConversion finish() { return MrcConversion{std::move(records_), std::move(result_)}; }

 private:
  [[noreturn]] void structural(const std::string& path, const std::string& message) const {
    fail(file_ + ": " + path + ": " + message);
  }

  void warn(const std::string& path, const std::string& message) {
    result_.warnings.add(file_ + ": " + path + ": " + message);
  }

  static const char* type_word(Json::value_t type) {
    switch (type) {
      case Json::value_t::array:
        return "an array";
      case Json::value_t::object:
        return "an object";
      case Json::value_t::string:
        return "a string";
      case Json::value_t::boolean:
        return "a boolean";
      default:
        return "an integer";
    }
  }

  static bool has_type(const Json& value, Json::value_t type) {
    if (type == Json::value_t::number_integer) return value.is_number_integer();
    return value.type() == type;
  }

  // obj[key], which must exist and have `type`; errors name the JSON path.
  const Json& field(const Json& obj, const char* key, const std::string& parent, Json::value_t type) const {
    const std::string path = parent.empty() ? key : parent + "." + key;
    if (!obj.is_object()) structural(parent.empty() ? "(top level)" : parent, "expected an object");
    const auto it = obj.find(key);
    if (it == obj.end()) {
      std::vector<std::string> keys;
      for (const auto& item : obj.items()) keys.push_back(item.key());
      const std::string near = nearest(key, keys);
      structural(
          path, near.empty() ? "missing" : "missing (is \"" + near + "\" a misspelling of \"" + key + "\"?)");
    }
    if (!has_type(*it, type)) {
      structural(
          path, std::string("expected ") + type_word(type) + ", got " + it->type_name() + " " + preview(*it));
    }
    return *it;
  }

  // An optional string field; "" when absent.
  std::string optional_string(const Json& obj, const char* key, const std::string& parent) const {
    if (!obj.contains(key) || obj.at(key).is_null()) return "";
    return field(obj, key, parent, Json::value_t::string).get<std::string>();
  }

  void add_article(const Json& article, const std::string& path) {
    if (!article.is_object()) structural(path, std::string("expected an object, got ") + article.type_name());
    ++result_.counts.articles;
    const std::string title = nfc(optional_string(article, "title", path));
    const Json& paragraphs = field(article, "paragraphs", path, Json::value_t::array);
    for (size_t p = 0; p < paragraphs.size(); ++p) {
      add_paragraph(paragraphs[p], title, path + ".paragraphs[" + std::to_string(p) + "]");
    }
  }

  void add_paragraph(const Json& paragraph, const std::string& title, const std::string& path) {
    if (!paragraph.is_object()) {
      structural(path, std::string("expected an object, got ") + paragraph.type_name());
    }
    ++result_.counts.paragraphs;
    const SpanContext context(field(paragraph, "context", path, Json::value_t::string).get<std::string>());
    const Json& qas = field(paragraph, "qas", path, Json::value_t::array);
    for (size_t q = 0; q < qas.size(); ++q) {
      add_question(qas[q], context, title, path + ".qas[" + std::to_string(q) + "]");
    }
  }

  // The question's id, unique over all inputs; repairs or rejects missing, empty and repeated ids.
  // `repaired` tells whether the id had to be replaced; the caller counts it once the record is written.
  std::string question_id(const Json& qa, const std::string& path, bool& repaired) {
    repaired = false;
    std::string id;
    if (qa.contains("id") && !qa.at("id").is_null()) {
      const Json& value = qa.at("id");
      if (value.is_string()) {
        id = value.get<std::string>();
      } else if (value.is_number_integer()) {
        id = value.dump();
      } else {
        structural(path + ".id", std::string("expected a string or an integer, got ") + value.type_name());
      }
    }
    if (!id.empty() && seen_ids_.insert(id)) return id;
    const std::string problem = id.empty() ? "missing or empty id" : "duplicate id " + in_quotes(id);
    if (!options_.repair_ids) {
      structural(path + ".id",
                 problem +
                     " (run qlora prepare squad_to_mrc without --strict to replace it with a unique "
                     "id and a warning; library: SquadToMrcOptions.repair_ids)");
    }
    // A repeated id X becomes X#2, X#3, ...; a missing one <file stem>#q<question number in file>.
    const std::string fresh =
        seen_ids_.unique(id.empty() ? file_stem(file_) + "#q" + std::to_string(file_questions_) : id);
    repaired = true;
    warn(path + ".id", problem + " replaced by " + in_quotes(fresh));
    return fresh;
  }

  // Checks a list of answers against the context; returns the valid ones with NFC text and
  // NFC code-point offsets. `counted`: whether these are "answers" (counted) or plausible ones.
  Json check_answers(const Json& answers, const SpanContext& context, const std::string& id,
                     const std::string& path, bool counted) {
    SquadCounts scratch;
    SquadCounts& counts = counted ? result_.counts : scratch;
    Json kept = Json::array();
    for (size_t k = 0; k < answers.size(); ++k) {
      const std::string answer_path = path + "[" + std::to_string(k) + "]";
      const Json& answer = answers[k];
      if (!answer.is_object()) {
        structural(answer_path, std::string("expected an object, got ") + answer.type_name());
      }
      const std::string text =
          nfc(field(answer, "text", answer_path, Json::value_t::string).get<std::string>());
      const int64_t given =
          field(answer, "answer_start", answer_path, Json::value_t::number_integer).get<int64_t>();
      ++counts.answers_checked;
      const std::string who = "question " + in_quotes(id) + ": ";
      if (text.empty()) {
        ++counts.empty_answers;
        if (options_.offset_mode == OffsetMode::strict) structural(answer_path, who + "empty answer text");
        ++counts.answers_dropped;
        warn(answer_path, who + "empty answer text; answer dropped");
        continue;
      }
      const std::u32string wanted = nfc_codepoints(text);
      const int64_t start = context.map_offset(given);
      if (context.holds(wanted, start)) {
        kept.push_back({{"text", text}, {"answer_start", start}});
        continue;
      }
      ++counts.mismatched_offsets;
      const std::string found = context.text_at(start, static_cast<int64_t>(wanted.size()));
      const std::string what = "answer_start " + std::to_string(given) +
                               " does not point at the answer: expected " + in_quotes(text) + ", found " +
                               in_quotes(found);
      if (options_.offset_mode == OffsetMode::strict) structural(answer_path, who + what);
      if (options_.offset_mode == OffsetMode::fix_offsets) {
        const int64_t moved = context.nearest_occurrence(wanted, start);
        if (moved >= 0) {
          ++counts.fixed;
          warn(answer_path, who + what + "; moved to " + std::to_string(moved));
          kept.push_back({{"text", text}, {"answer_start", moved}});
          continue;
        }
        warn(answer_path, who + what + "; the text does not occur in the context; answer dropped");
      } else {
        warn(answer_path, who + what + "; answer dropped");
      }
      ++counts.answers_dropped;
    }
    return kept;
  }

  void add_question(const Json& qa, const SpanContext& context, const std::string& title,
                    const std::string& path) {
    if (!qa.is_object()) structural(path, std::string("expected an object, got ") + qa.type_name());
    ++result_.counts.questions;
    ++file_questions_;
    const std::string question = nfc(field(qa, "question", path, Json::value_t::string).get<std::string>());
    bool impossible = false;
    if (qa.contains("is_impossible") && !qa.at("is_impossible").is_null()) {
      impossible = field(qa, "is_impossible", path, Json::value_t::boolean).get<bool>();
    }
    bool id_repaired = false;
    const std::string id = question_id(qa, path, id_repaired);

    Json record;
    record["id"] = id;
    record["title"] = title;
    record["context"] = context.normalized();
    record["question"] = question;
    if (impossible) {
      ++result_.counts.impossible;
      if (qa.contains("answers") && !qa.at("answers").is_null()) {
        const Json& answers = field(qa, "answers", path, Json::value_t::array);
        if (!answers.empty()) {
          warn(path + ".answers", "question " + in_quotes(id) + " is marked is_impossible but has " +
                                      std::to_string(answers.size()) + " answer(s); they are ignored");
        }
      }
      record["answers"] = Json::array();
      record["is_impossible"] = true;
      if (options_.keep_plausible_answers && qa.contains("plausible_answers")) {
        const Json& plausible = field(qa, "plausible_answers", path, Json::value_t::array);
        record["plausible_answers"] =
            check_answers(plausible, context, id, path + ".plausible_answers", /*counted=*/false);
      }
    } else {
      ++result_.counts.answerable;
      const Json& answers = field(qa, "answers", path, Json::value_t::array);
      Json kept = check_answers(answers, context, id, path + ".answers", /*counted=*/true);
      if (kept.empty()) {
        if (answers.empty() && options_.offset_mode == OffsetMode::strict) {
          structural(path + ".answers", "question " + in_quotes(id) + " is answerable but has no answers");
        }
        ++result_.counts.records_dropped;
        warn(path, "question " + in_quotes(id) + " dropped: no valid answer remains");
        return;
      }
      record["answers"] = std::move(kept);
      record["is_impossible"] = false;
    }
    records_.push_back(std::move(record));
    ++result_.counts.written;
    if (id_repaired) ++result_.counts.ids_repaired;
  }

  const SquadToMrcOptions& options_;
  SquadToMrcResult result_;
  std::vector<Json> records_;
  IdSet seen_ids_;
  std::string file_;
  int64_t file_questions_ = 0;
};

}  // namespace

MrcConversion convert_squad(const SquadToMrcOptions& options) {
  if (options.inputs.empty()) fail("squad_to_mrc: no input files given");
  SquadConverter converter(options);
  for (const auto& input : options.inputs) converter.add_file(input);
  return converter.finish();
}

SquadToMrcResult squad_to_mrc(const SquadToMrcOptions& options) {
  if (options.output.empty()) fail("squad_to_mrc: no output path given");
  MrcConversion conversion = convert_squad(options);
  write_jsonl_atomic(options.output, conversion.records);
  return std::move(conversion.result);
}

}  // namespace qlora::data
