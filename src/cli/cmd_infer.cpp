// qlora infer: answer questions (extractive QA) or generate text with a model and adapter.
#include "command.h"
#include "qlora/core/error.h"

namespace qlora::cli {

namespace {

struct InferOptions {
  std::string task = "generate";
  std::string model;
  std::string adapter;
  std::string prompt;
  std::string question;
  std::string context;
  std::string input;
  std::string output;
  int64_t max_new_tokens = 128;
  double temperature = 0.0;
};

Json run_infer(const InferOptions& opts) {
  if (opts.model.empty()) fail("--model is required");
  fail("inference for task '" + opts.task +
       "' is not implemented yet (QA arrives with issue #3, generation with issue #4)");
}

}  // namespace

void add_infer_command(CLI::App& app, Registry& registry, const GlobalOptions& global) {
  auto opts = std::make_shared<InferOptions>();
  auto* sub = app.add_subcommand("infer", "Answer questions or generate text with a model (+ adapter)");
  sub->add_option("--task", opts->task, "qa (extractive) or generate")
      ->check(CLI::IsMember({"qa", "generate"}))
      ->capture_default_str();
  sub->add_option("--model", opts->model, "model folder (Hugging Face layout)");
  sub->add_option("--adapter", opts->adapter, "PEFT adapter folder");
  sub->add_option("--prompt", opts->prompt, "prompt text (generate)");
  sub->add_option("--question", opts->question, "question (qa)");
  sub->add_option("--context", opts->context, "context passage (qa)");
  sub->add_option("--input", opts->input, "JSONL of prompts or question/context records");
  sub->add_option("--output", opts->output, "JSONL predictions file");
  sub->add_option("--max-new-tokens", opts->max_new_tokens, "tokens to generate")->capture_default_str();
  sub->add_option("--temperature", opts->temperature, "sampling temperature (0: greedy)")->capture_default_str();
  sub->footer(example_footer(
      "  qlora infer --task qa --model runs/xlmr/best --question 'Ai ...?' --context '...'\n"
      "  qlora infer --model ../shared/data/models/aidreams260K --prompt '' --max-new-tokens 100 --json\n"));
  registry.add(sub, [opts] { return run_infer(*opts); });
}

}  // namespace qlora::cli
