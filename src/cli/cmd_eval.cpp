// qlora eval: score a model on a prepared set, or a predictions file against references.
#include "command.h"
#include "qlora/core/error.h"
#include "qlora/core/log.h"
#include "qlora/eval/qa_files.h"

namespace qlora::cli {

namespace {

struct EvalOptions {
  std::string metric = "em_f1";
  std::string predictions;
  std::vector<std::string> references;
  std::string normalize = "squad";
  std::string lang = "vi";
  std::string version = "auto";
  double na_threshold = 1.0;
  std::string model;
  std::string adapter;
  std::string data;
};

Json run_em_f1(const EvalOptions& opts) {
  if (!opts.model.empty()) fail("scoring a model directly arrives with the XLM-R training engine (issue #3); "
                                "score a predictions file with --predictions and --references");
  if (opts.predictions.empty() || opts.references.size() != 1) {
    fail("em_f1 needs --predictions P.jsonl and one --references R.jsonl (the prepared MRC file)");
  }
  eval::SquadMetricOptions o;
  o.version = eval::parse_squad_version(opts.version);
  o.normalize = eval::parse_normalization(opts.normalize);
  o.lang = opts.lang;
  o.na_threshold = opts.na_threshold;
  const auto refs = eval::read_mrc_references(opts.references[0]);
  const auto preds = eval::read_qa_predictions(opts.predictions);
  const auto result = eval::squad_metric(refs, preds, o);
  Json out = result.to_json();
  Json details = result.details_json();
  if (details.value("missing", 0) > 0) {
    log::warn(std::to_string(details["missing"].get<int64_t>()) +
              " reference questions have no prediction; they score 0");
  }
  if (details.value("unknown_predictions", 0) > 0) {
    log::warn(std::to_string(details["unknown_predictions"].get<int64_t>()) +
              " predictions have ids that are not in the references; ignored");
  }
  out["details"] = details;
  return out;
}

Json run_eval(const EvalOptions& opts) {
  if (opts.metric == "em_f1") return run_em_f1(opts);
  fail("metric '" + opts.metric + "' is not implemented yet (ROUGE and BLEU arrive with issue #5)");
}

}  // namespace

void add_eval_command(CLI::App& app, Registry& registry, const GlobalOptions& global) {
  auto opts = std::make_shared<EvalOptions>();
  auto* sub = app.add_subcommand("eval", "Score a model, or a predictions file, with EM/F1, ROUGE or BLEU");
  sub->add_option("--metric", opts->metric, "em_f1, rouge or bleu")
      ->check(CLI::IsMember({"em_f1", "rouge", "bleu"}))
      ->capture_default_str();
  sub->add_option("--predictions", opts->predictions,
                  "predictions JSONL: {\"id\", \"prediction_text\"[, \"no_answer_probability\"]} per line")
      ->check(CLI::ExistingFile);
  sub->add_option("--references", opts->references, "references: the prepared MRC JSONL")->check(CLI::ExistingFile);
  sub->add_option("--normalize", opts->normalize,
                  "answer normalisation: squad (the official script, ASCII punctuation and English articles) "
                  "or mlqa (Unicode punctuation and per-language articles; right for Vietnamese)")
      ->check(CLI::IsMember({"squad", "mlqa"}))
      ->capture_default_str();
  sub->add_option("--lang", opts->lang, "language of the mlqa normalisation: vi, en, es, de, ar, hi, zh")
      ->capture_default_str();
  sub->add_option("--squad-version", opts->version, "auto (v2 when any question is unanswerable), v1 or v2")
      ->capture_default_str();
  sub->add_option("--na-threshold", opts->na_threshold, "v2: no_answer_probability above this predicts no answer")
      ->capture_default_str();
  sub->add_option("--model", opts->model, "model folder to evaluate");
  sub->add_option("--adapter", opts->adapter, "adapter folder applied to --model");
  sub->add_option("--data", opts->data, "prepared evaluation JSONL");
  sub->footer(example_footer(
      "  qlora eval --metric em_f1 --predictions preds.jsonl --references valid.jsonl\n"
      "  qlora eval --metric em_f1 --predictions preds.jsonl --references valid.jsonl --normalize mlqa --lang vi\n"
      "Default normalisation is squad, so scores equal Hugging Face evaluate's squad/squad_v2 and\n"
      "published numbers; it keeps Vietnamese letters but only strips ASCII punctuation and English\n"
      "articles. --normalize mlqa --lang vi is the MLQA script's rule for Vietnamese.\n"));
  registry.add(sub, [opts] { return run_eval(*opts); });
}

}  // namespace qlora::cli
