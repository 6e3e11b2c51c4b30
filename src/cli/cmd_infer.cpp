// qlora infer: answer questions (extractive QA) or generate text with a model and adapter.
#include "command.h"
#include "qlora/core/error.h"
#include "qlora/core/log.h"
#include "qlora/tasks/qa_task.h"

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
  int64_t max_seq_length = 384;
  int64_t doc_stride = 128;
  int64_t n_best_size = 20;
  int64_t max_answer_length = 30;
  bool version_2_with_negative = false;
  std::string dtype = "fp32";
};

// Questions from --question/--context or a JSONL file of {"id"?, "question", "context"} (the
// prepared MRC format works as it is).
std::vector<qa::QaExample> qa_inputs(const InferOptions& opts) {
  std::vector<qa::QaExample> out;
  if (!opts.input.empty()) {
    for_each_jsonl(opts.input, [&](const Json& r, int64_t line) {
      if (!r.contains("question") || !r["question"].is_string() || !r.contains("context") ||
          !r["context"].is_string()) {
        fail_at(opts.input, line, "expected string fields \"question\" and \"context\"");
      }
      qa::QaExample ex;
      ex.id = r.contains("id") && r["id"].is_string() ? r["id"].get<std::string>()
                                                      : "line-" + std::to_string(line);
      ex.question = r["question"].get<std::string>();
      ex.context = r["context"].get<std::string>();
      out.push_back(std::move(ex));
    });
  } else {
    if (opts.question.empty() || opts.context.empty())
      fail("--task qa needs --question and --context, or --input");
    out.push_back({"q0", opts.context, opts.question, {}, false});
  }
  return out;
}

Json run_qa(const InferOptions& opts) {
  const auto model = tasks::load_qa_model(opts.model, "", opts.adapter, opts.dtype);
  const auto examples = qa_inputs(opts);
  tasks::QaPredictOptions po;
  po.features = {opts.max_seq_length, opts.doc_stride};
  po.postprocess.n_best_size = opts.n_best_size;
  po.postprocess.max_answer_length = opts.max_answer_length;
  po.postprocess.version_2_with_negative = opts.version_2_with_negative;
  const auto predictions = tasks::predict_qa(model, examples, po);
  Json answers = Json::array();
  std::vector<Json> lines;
  for (const auto& p : predictions.answers) {
    Json line = qa::prediction_to_json(p, opts.version_2_with_negative);
    if (!p.nbest.empty()) {
      line["score"] = p.nbest.front().score;
      line["probability"] = p.nbest.front().probability;
    }
    lines.push_back(line);
    answers.push_back(line);
  }
  Json out = {{"task", "qa"}, {"questions", examples.size()}};
  if (!opts.output.empty()) {
    write_jsonl_atomic(opts.output, lines);
    out["output"] = opts.output;
  }
  if (examples.size() <= 100) out["answers"] = answers;
  return out;
}

Json run_infer(const InferOptions& opts) {
  if (opts.model.empty()) fail("--model is required");
  if (opts.task == "qa") return run_qa(opts);
  fail("inference for task '" + opts.task + "' is not implemented yet (generation arrives with issue #4)");
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
  sub->add_option("--temperature", opts->temperature, "sampling temperature (0: greedy)")
      ->capture_default_str();
  sub->add_option("--max-seq-length", opts->max_seq_length, "qa: tokens per window")->capture_default_str();
  sub->add_option("--doc-stride", opts->doc_stride, "qa: token overlap between windows")
      ->capture_default_str();
  sub->add_option("--n-best-size", opts->n_best_size, "qa: candidate starts/ends kept")
      ->capture_default_str();
  sub->add_option("--max-answer-length", opts->max_answer_length, "qa: longest answer in tokens")
      ->capture_default_str();
  sub->add_flag("--version-2-with-negative", opts->version_2_with_negative,
                "qa: the model may answer 'no answer' (SQuAD v2 / UIT-ViQuAD 2.0)");
  sub->add_option("--dtype", opts->dtype, "fp32, bf16 or fp16")->capture_default_str();
  sub->footer(example_footer(
      "  qlora infer --task qa --model runs/xlmr/best --question 'Ai ...?' --context '...'\n"
      "  qlora infer --model ../shared/data/models/aidreams260K --prompt '' --max-new-tokens 100 --json\n"));
  registry.add(sub, [opts] { return run_infer(*opts); });
}

}  // namespace qlora::cli
