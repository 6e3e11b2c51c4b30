#include "qlora/data/instruct.h"

#include "qlora/core/error.h"
#include "qlora/core/suggest.h"

namespace qlora::data {

namespace {

constexpr const char* kNoInputHead =
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\n";
constexpr const char* kInputHead =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n### Instruction:\n";
constexpr const char* kInputMark = "\n\n### Input:\n";
constexpr const char* kResponseTail = "\n\n### Response:";

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

// The known field names, for a did-you-mean on records that match neither shape.
const std::vector<std::string> kKnownFields = {"instruction", "input", "output", "prompt", "response"};

std::string shape_problem(const Json& record) {
  std::string message = "record has neither instruction/output nor prompt/response fields";
  std::string keys;
  for (const auto& item : record.items()) {
    keys += (keys.empty() ? "" : ", ") + item.key();
    const std::string hint = did_you_mean(item.key(), kKnownFields);
    if (!hint.empty()) return message + ": unknown field \"" + item.key() + "\"" + hint;
  }
  return message + " (fields: " + (keys.empty() ? "none" : keys) + ")";
}

}  // namespace

bool unwrap_alpaca_prompt(const std::string& prompt, std::string& instruction, std::string& input) {
  std::string body = prompt;
  if (!body.empty() && body.back() == '\n') body.pop_back();
  const std::string tail = kResponseTail;
  if (body.size() < tail.size() || body.compare(body.size() - tail.size(), tail.size(), tail) != 0)
    return false;
  body.resize(body.size() - tail.size());
  if (starts_with(body, kNoInputHead)) {
    instruction = body.substr(std::string(kNoInputHead).size());
    input.clear();
    return !instruction.empty();
  }
  if (starts_with(body, kInputHead)) {
    body = body.substr(std::string(kInputHead).size());
    const auto mark = body.find(kInputMark);
    if (mark == std::string::npos) return false;
    instruction = body.substr(0, mark);
    input = body.substr(mark + std::string(kInputMark).size());
    return !instruction.empty();
  }
  return false;
}

Json InstructResult::to_json() const {
  Json out;
  out["counts"] = {{"read", counts.read},
                   {"alpaca", counts.alpaca},
                   {"prompt_response", counts.prompt_response},
                   {"unwrapped", counts.unwrapped},
                   {"skipped", counts.skipped},
                   {"written", counts.written}};
  warnings.append_to(out);
  return out;
}

InstructConversion convert_instruct(const InstructOptions& options) {
  if (options.inputs.empty()) fail("prepare instruct: no input files given");
  InstructConversion conversion{{}, {{}, Warnings(options.max_warnings)}};
  InstructCounts& counts = conversion.result.counts;
  IdSet ids;
  for (const auto& input : options.inputs) {
    const std::string stem = file_stem(input);
    for_each_record(input, [&](const Json& record, const RecordPlace& place) {
      ++counts.read;
      const auto reject = [&](const std::string& problem) {
        reject_record(place, problem, options.skip_invalid, conversion.result.warnings, counts.skipped);
      };
      const bool alpaca = record.contains("instruction") || record.contains("output");
      const bool prompt = record.contains("prompt") || record.contains("response");
      if (alpaca && prompt) return reject("record mixes instruction/output with prompt/response fields");
      if (!alpaca && !prompt) return reject(shape_problem(record));

      TextField instruction, context, output;
      bool unwrapped = false;
      if (alpaca) {
        instruction = text_field(record, "instruction", /*required=*/true, /*allow_blank=*/false);
        context = text_field(record, "input", /*required=*/false, /*allow_blank=*/true);
        output = text_field(record, "output", /*required=*/true, /*allow_blank=*/false);
      } else {
        instruction = text_field(record, "prompt", /*required=*/true, /*allow_blank=*/false);
        output = text_field(record, "response", /*required=*/true, /*allow_blank=*/false);
        if (instruction.ok() && options.unwrap_alpaca_prompt) {
          std::string inner, inner_input;
          if (unwrap_alpaca_prompt(instruction.text, inner, inner_input)) {
            instruction.text = std::move(inner);
            context.text = std::move(inner_input);
            unwrapped = true;
          }
        }
      }
      for (const TextField* f : {&instruction, &context, &output}) {
        if (!f->ok()) return reject(f->problem);
      }
      std::string id_problem;
      std::string id = record_id(record, id_problem);
      if (!id_problem.empty()) return reject(id_problem);
      if (id.empty()) {
        id = ids.unique(stem + "-" + std::to_string(place.number()));
      } else if (!ids.insert(id)) {
        return reject("duplicate id \"" + id + "\"");
      }
      ++(alpaca ? counts.alpaca : counts.prompt_response);
      if (unwrapped) ++counts.unwrapped;
      Json out;
      out["id"] = id;
      out["instruction"] = instruction.text;
      out["input"] = context.text;
      out["output"] = output.text;
      conversion.records.push_back(std::move(out));
      ++counts.written;
    });
  }
  return conversion;
}

InstructResult prepare_instruct(const InstructOptions& options) {
  if (options.output.empty()) fail("prepare instruct: no output path given");
  InstructConversion conversion = convert_instruct(options);
  write_jsonl_atomic(options.output, conversion.records);
  return std::move(conversion.result);
}

}  // namespace qlora::data
