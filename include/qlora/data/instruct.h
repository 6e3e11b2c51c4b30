// Instruction data -> instruction JSONL {"id","instruction","input","output"}
// (format: docs/DATA_FORMATS.md). Inputs: an Alpaca JSON array or JSONL of
// {instruction, input?, output}, or JSONL/JSON of {prompt, response}.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qlora/core/jsonl.h"
#include "qlora/data/record_io.h"

namespace qlora::data {

struct InstructOptions {
  std::vector<std::string> inputs;  // converted in order into one output
  std::string output;               // instruction JSONL path, written atomically
  // An invalid record (missing/mistyped/empty field, repeated id) is an Error naming
  // FILE:LINE (JSONL) or FILE: [INDEX] (JSON array); with skip_invalid it is skipped with a warning.
  bool skip_invalid = false;
  // A {prompt} that is a complete Alpaca prompt ("Below is an instruction ... ### Instruction:\n
  // ... ### Response:") is split back into instruction and input, so that training does not
  // wrap it in a second template.
  bool unwrap_alpaca_prompt = true;
  size_t max_warnings = 100;
};

struct InstructCounts {
  int64_t read = 0;             // records read
  int64_t alpaca = 0;           // {instruction, input?, output} records
  int64_t prompt_response = 0;  // {prompt, response} records
  int64_t unwrapped = 0;        // prompts split back out of the Alpaca template
  int64_t skipped = 0;          // invalid records skipped (skip_invalid)
  int64_t written = 0;          // records in the output
};

struct InstructResult {
  InstructCounts counts;
  Warnings warnings;
  Json to_json() const;  // {"counts": {...}, "warnings": [...], "warnings_suppressed": N}
};

struct InstructConversion {
  std::vector<Json> records;
  InstructResult result;
};

// Converts without writing.
InstructConversion convert_instruct(const InstructOptions& options);

// convert_instruct, then writes options.output atomically. On an Error nothing is written.
InstructResult prepare_instruct(const InstructOptions& options);

// The Alpaca prompt (tatsu-lab/stanford_alpaca PROMPT_DICT) split back into instruction and
// input; false when `prompt` is not exactly such a prompt. A trailing "\n" after
// "### Response:" is accepted (llm-foundry's dolly_hhrlhf writes one).
bool unwrap_alpaca_prompt(const std::string& prompt, std::string& instruction, std::string& input);

}  // namespace qlora::data
