// qlora eval: score a model on a prepared set, or a predictions file against references.
#include "command.h"
#include "qlora/core/error.h"
#include "qlora/core/log.h"
#include "qlora/eval/qa_files.h"
#include "qlora/tasks/qa_task.h"

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
  std::string predictions_out;
  int64_t max_seq_length = 384;
  int64_t doc_stride = 128;
  bool version_2_with_negative = false;
};

// Runs the model over a prepared MRC file and scores its answers.
Json run_model_em_f1(const EvalOptions& opts) {
  if (opts.data.empty()) fail("--model needs --data, the prepared MRC JSONL to evaluate on");
  const auto model = tasks::load_qa_model(opts.model, "", opts.adapter, "fp32");
  const auto examples = qa::read_qa_examples(opts.data);
  tasks::QaPredictOptions po;
  po.features = {opts.max_seq_length, opts.doc_stride};
  po.postprocess.version_2_with_negative = opts.version_2_with_negative;
  const auto predictions = tasks::predict_qa(model, examples, po);
  if (!opts.predictions_out.empty()) {
    std::vector<Json> lines;
    for (const auto& p : predictions.answers)
      lines.push_back(qa::prediction_to_json(p, opts.version_2_with_negative));
    write_jsonl_atomic(opts.predictions_out, lines);
  }
  Json out = tasks::score_qa(examples, predictions, opts.version_2_with_negative, opts.normalize, opts.lang);
  out["questions"] = examples.size();
  out["windows"] = predictions.features;
  if (!opts.predictions_out.empty()) out["predictions_file"] = opts.predictions_out;
  return out;
}

Json run_em_f1(const EvalOptions& opts) {
  if (!opts.model.empty()) return run_model_em_f1(opts);
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
  sub->add_option("--references", opts->references, "references: the prepared MRC JSONL")
      ->check(CLI::ExistingFile);
  sub->add_option("--normalize", opts->normalize,
                  "answer normalisation: squad (the official script, ASCII punctuation and English articles) "
                  "or mlqa (Unicode punctuation and per-language articles; right for Vietnamese)")
      ->check(CLI::IsMember({"squad", "mlqa"}))
      ->capture_default_str();
  sub->add_option("--lang", opts->lang, "language of the mlqa normalisation: vi, en, es, de, ar, hi, zh")
      ->capture_default_str();
  sub->add_option("--squad-version", opts->version, "auto (v2 when any question is unanswerable), v1 or v2")
      ->capture_default_str();
  sub->add_option("--na-threshold", opts->na_threshold,
                  "v2: no_answer_probability above this predicts no answer")
      ->capture_default_str();
  sub->add_option("--model", opts->model, "model folder to evaluate");
  sub->add_option("--adapter", opts->adapter, "adapter folder applied to --model");
  sub->add_option("--data", opts->data, "prepared evaluation JSONL")->check(CLI::ExistingFile);
  sub->add_option("--predictions-out", opts->predictions_out,
                  "with --model: also write the predictions JSONL");
  sub->add_option("--max-seq-length", opts->max_seq_length, "with --model: tokens per window")
      ->capture_default_str();
  sub->add_option("--doc-stride", opts->doc_stride, "with --model: token overlap between windows")
      ->capture_default_str();
  sub->add_flag("--version-2-with-negative", opts->version_2_with_negative,
                "with --model: the model may answer 'no answer' (SQuAD v2)");
  sub->footer(example_footer(
      "  qlora eval --metric em_f1 --predictions preds.jsonl --references valid.jsonl\n"
      "  qlora eval --metric em_f1 --model data/models/xlmr-tiny --adapter runs/demo/xlmr/checkpoint-40 "
      "--data valid.jsonl\n"
      "  qlora eval --metric em_f1 --predictions preds.jsonl --references valid.jsonl --normalize mlqa "
      "--lang vi\n"
      "Default normalisation is squad, so scores equal Hugging Face evaluate's squad/squad_v2 and\n"
      "published numbers; it keeps Vietnamese letters but only strips ASCII punctuation and English\n"
      "articles. --normalize mlqa --lang vi is the MLQA script's rule for Vietnamese.\n"));
  registry.add(sub, [opts] { return run_eval(*opts); });
}

}  // namespace qlora::cli
