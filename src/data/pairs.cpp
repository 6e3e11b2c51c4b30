#include "qlora/data/pairs.h"

#include "qlora/core/atomic_file.h"
#include "qlora/core/error.h"
#include "qlora/core/unicode.h"

namespace qlora::data {

namespace {

// The lines of a text file: split on '\n', a trailing '\r' removed, no empty last line for a
// final newline. Malformed UTF-8 is an Error naming FILE:LINE.
std::vector<std::string> read_lines(const std::string& path) {
  const std::string text = read_file(path);
  std::vector<std::string> lines;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(begin, end - begin);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!is_valid_utf8(line)) fail_at(path, static_cast<int64_t>(lines.size()) + 1, "malformed UTF-8");
    lines.push_back(std::move(line));
    begin = end + 1;
  }
  return lines;
}

bool blank(const std::string& text) { return text.find_first_not_of(" \t") == std::string::npos; }

void add_record(PairsConversion& conversion, std::string id, std::string source, std::string target) {
  Json out;
  out["id"] = std::move(id);
  out["source"] = std::move(source);
  out["target"] = std::move(target);
  conversion.records.push_back(std::move(out));
  ++conversion.result.counts.written;
}

void convert_parallel(const PairsOptions& options, PairsConversion& conversion) {
  const auto sources = read_lines(options.source_text);
  const auto targets = read_lines(options.target_text);
  if (sources.size() != targets.size()) {
    fail("parallel files differ in length: " + options.source_text + " has " +
         std::to_string(sources.size()) + " lines, " + options.target_text + " has " +
         std::to_string(targets.size()));
  }
  PairsCounts& counts = conversion.result.counts;
  const std::string stem = file_stem(options.source_text);
  for (size_t i = 0; i < sources.size(); ++i) {
    ++counts.read;
    const int64_t line = static_cast<int64_t>(i) + 1;
    const char* empty_side = blank(sources[i]) ? "source" : blank(targets[i]) ? "target" : nullptr;
    if (empty_side != nullptr) {
      const std::string& file = blank(sources[i]) ? options.source_text : options.target_text;
      reject_record(RecordPlace{file, line, -1}, std::string("empty ") + empty_side + " segment",
                    options.skip_invalid, conversion.result.warnings, counts.skipped);
      continue;
    }
    add_record(conversion, stem + "-" + std::to_string(line), nfc(sources[i]), nfc(targets[i]));
  }
}

void convert_records(const PairsOptions& options, PairsConversion& conversion) {
  PairsCounts& counts = conversion.result.counts;
  IdSet ids;
  for (const auto& input : options.inputs) {
    const std::string stem = file_stem(input);
    for_each_record(input, [&](const Json& record, const RecordPlace& place) {
      ++counts.read;
      const auto reject = [&](const std::string& problem) {
        reject_record(place, problem, options.skip_invalid, conversion.result.warnings, counts.skipped);
      };
      const TextField source =
          text_field(record, options.source_field, /*required=*/true, /*allow_blank=*/false);
      if (!source.ok()) return reject(source.problem);
      const TextField target =
          text_field(record, options.target_field, /*required=*/true, /*allow_blank=*/false);
      if (!target.ok()) return reject(target.problem);
      std::string id_problem;
      std::string id = record_id(record, id_problem);
      if (!id_problem.empty()) return reject(id_problem);
      if (id.empty()) {
        id = ids.unique(stem + "-" + std::to_string(place.number()));
      } else if (!ids.insert(id)) {
        return reject("duplicate id \"" + id + "\"");
      }
      add_record(conversion, std::move(id), source.text, target.text);
    });
  }
}

}  // namespace

Json PairsResult::to_json() const {
  Json out;
  out["counts"] = {{"read", counts.read}, {"skipped", counts.skipped}, {"written", counts.written}};
  warnings.append_to(out);
  return out;
}

PairsConversion convert_pairs(const PairsOptions& options) {
  const bool parallel = !options.source_text.empty() || !options.target_text.empty();
  if (parallel && !options.inputs.empty())
    fail("prepare pairs: give JSONL inputs or two parallel text files, not both");
  if (parallel && (options.source_text.empty() || options.target_text.empty())) {
    fail("prepare pairs: parallel text input needs both a source file and a target file");
  }
  if (!parallel && options.inputs.empty()) fail("prepare pairs: no input files given");
  if (!parallel && options.source_field == options.target_field) {
    fail("prepare pairs: source and target field are both \"" + options.source_field + "\"");
  }
  PairsConversion conversion{{}, {{}, Warnings(options.max_warnings)}};
  if (parallel) {
    convert_parallel(options, conversion);
  } else {
    convert_records(options, conversion);
  }
  return conversion;
}

PairsResult prepare_pairs(const PairsOptions& options) {
  if (options.output.empty()) fail("prepare pairs: no output path given");
  PairsConversion conversion = convert_pairs(options);
  write_jsonl_atomic(options.output, conversion.records);
  return std::move(conversion.result);
}

}  // namespace qlora::data
