// qlora eval: score a model on a prepared set, or a predictions file against references.
#include "command.h"
#include "qlora/core/error.h"

namespace qlora::cli {

namespace {

struct EvalOptions {
  std::string metric = "em_f1";
  std::string predictions;
  std::vector<std::string> references;
  std::string model;
  std::string adapter;
  std::string data;
};

Json run_eval(const EvalOptions& opts) {
  fail("metric '" + opts.metric +
       "' is not implemented yet (EM/F1 arrives with issue #3, ROUGE/BLEU with issue #5)");
}

}  // namespace

void add_eval_command(CLI::App& app, Registry& registry, const GlobalOptions& global) {
  auto opts = std::make_shared<EvalOptions>();
  auto* sub = app.add_subcommand("eval", "Score a model, or a predictions file, with EM/F1, ROUGE or BLEU");
  sub->add_option("--metric", opts->metric, "em_f1, rouge or bleu")
      ->check(CLI::IsMember({"em_f1", "rouge", "bleu"}))
      ->capture_default_str();
  sub->add_option("--predictions", opts->predictions, "predictions file (JSONL, or text with one segment a line)");
  sub->add_option("--references", opts->references, "reference file(s)");
  sub->add_option("--model", opts->model, "model folder to evaluate");
  sub->add_option("--adapter", opts->adapter, "adapter folder applied to --model");
  sub->add_option("--data", opts->data, "prepared evaluation JSONL");
  sub->footer(example_footer(
      "  qlora eval --metric em_f1 --predictions preds.jsonl --references valid.jsonl\n"
      "  qlora eval --metric rouge --predictions hyp.txt --references ref.txt\n"));
  registry.add(sub, [opts] { return run_eval(*opts); });
}

}  // namespace qlora::cli
