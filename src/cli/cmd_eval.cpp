// qlora eval: score a model on a prepared set, or a predictions file against references.
#include "command.h"
#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"
#include "qlora/core/log.h"
#include "qlora/eval/qa_files.h"
#include "qlora/eval/text_metric.h"
#include "qlora/io/hf_config.h"
#include "qlora/tasks/qa_task.h"
#include "qlora/tasks/seq2seq_task.h"

namespace qlora::cli {

namespace {

struct EvalOptions {
  std::string metric = "em_f1";
  std::string predictions;
  std::vector<std::string> references;
  std::string normalize = "squad";
  std::string lang;  // required with --normalize mlqa
  std::string version = "auto";
  double na_threshold = 1.0;
  std::string model;
  std::string adapter;
  std::string data;
  std::string predictions_out;
  int64_t max_seq_length = 384;
  int64_t doc_stride = 128;
  bool version_2_with_negative = false;
  // Text metrics (rouge, bleu, chrf).
  std::string field;             // JSONL: the field of both sides
  std::string prediction_field;  // JSONL: overrides --field for the predictions
  std::string reference_field;   // JSONL: overrides --field for the references
  std::string rouge_tokenizer = "default";
  bool no_stemmer = false;
  int chrf_word_order = 0;
  std::string bleu_tokenize = "13a";
  // Text metrics with --model (T5): generation of the --data pairs.
  std::string source_template = "{source}";
  std::string target_template = "{target}";
  int64_t num_beams = 1;
  int64_t max_new_tokens = 128;
  int64_t batch_size = 8;
  std::string dtype = "fp32";
  std::string attn_implementation = "sdpa";  // with --model: sdpa or eager (nn/attention.h)
};

eval::TextMetricOptions metric_options(const EvalOptions& opts);

// T5 + adapter over a pairs JSONL ({source, target}): generate, then score against the targets.
Json run_model_text_metric(const EvalOptions& opts) {
  if (opts.data.empty()) fail("--model needs --data, a pairs JSONL ({source, target}) to generate from");
  const std::string type = HfConfig::load(opts.model).model_type();
  if (type != "t5" && type != "mt5")
    fail(opts.model + ": --metric " + opts.metric + " with --model supports T5 models (model_type '" + type +
         "'); score a predictions file from `qlora infer --input` instead");
  const auto t5 = tasks::load_t5_bundle(opts.model, "", opts.adapter, opts.dtype);
  t5.model->config.attn_implementation =
      nn::parse_attn_implementation(opts.attn_implementation, "--attn-implementation");
  config::RunConfig rc;
  rc.data.source_template = opts.source_template;
  rc.data.target_template = opts.target_template;
  rc.data.max_seq_length = opts.max_seq_length;
  rc.data.max_target_length = opts.max_new_tokens;
  const auto samples = tasks::read_seq2seq_samples(opts.data, rc, *t5.tokenizer);
  config::GenerationSection g;
  g.num_beams = opts.num_beams;
  g.max_new_tokens = opts.max_new_tokens;
  const auto texts = tasks::generate_texts(t5, samples, g, opts.batch_size);
  std::vector<std::vector<std::string>> refs;
  std::vector<Json> lines;
  for (size_t i = 0; i < samples.size(); ++i) {
    refs.push_back({samples[i].target});
    lines.push_back({{"source", samples[i].source}, {"target", samples[i].target}, {"prediction", texts[i]}});
  }
  Json out = eval::score_text_metric(opts.metric, texts, refs, metric_options(opts));
  if (!opts.predictions_out.empty()) {
    write_jsonl_atomic(opts.predictions_out, lines);
    out["predictions_file"] = opts.predictions_out;
  }
  out["model"] = opts.model;
  if (!opts.adapter.empty()) out["adapter"] = opts.adapter;
  return out;
}

// Runs the model over a prepared MRC file and scores its answers.
Json run_model_em_f1(const EvalOptions& opts) {
  if (opts.data.empty()) fail("--model needs --data, the prepared MRC JSONL to evaluate on");
  const auto model = tasks::load_qa_model(opts.model, "", opts.adapter, "fp32");
  model.model->config.attn_implementation =
      nn::parse_attn_implementation(opts.attn_implementation, "--attn-implementation");
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

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// ROUGE, BLEU or chrF of a predictions file against one or more reference files (plain text, one
// segment per line, or JSONL with --field).
Json run_text_metric(const EvalOptions& opts) {
  if (!opts.model.empty()) return run_model_text_metric(opts);
  if (opts.predictions.empty()) fail("--metric " + opts.metric + " needs --predictions");
  const std::string prediction_field = opts.prediction_field.empty() ? opts.field : opts.prediction_field;
  const std::string reference_field = opts.reference_field.empty() ? opts.field : opts.reference_field;
  eval::TextMetricInputs inputs;
  if (prediction_field.empty() && reference_field.empty()) {
    if (ends_with(opts.predictions, ".jsonl")) {
      fail(opts.predictions +
           " looks like JSONL: pass --field NAME (or --prediction-field and --reference-field)");
    }
    if (opts.references.empty())
      fail("--metric " + opts.metric + " needs --references (one file per reference set)");
    inputs = eval::read_text_metric_lines(opts.predictions, opts.references);
  } else {
    if (prediction_field.empty()) fail("JSONL input needs --prediction-field (or --field) as well");
    if (reference_field.empty()) fail("JSONL input needs --reference-field (or --field) as well");
    inputs =
        eval::read_text_metric_jsonl(opts.predictions, opts.references, prediction_field, reference_field);
  }
  Json out =
      eval::score_text_metric(opts.metric, inputs.predictions, inputs.references, metric_options(opts));
  out["predictions_file"] = opts.predictions;
  return out;
}

eval::TextMetricOptions metric_options(const EvalOptions& opts) {
  eval::TextMetricOptions mo;
  mo.rouge.tokenizer = eval::parse_rouge_tokenizer(opts.rouge_tokenizer);
  mo.rouge.use_stemmer = !opts.no_stemmer;
  mo.chrf.word_order = opts.chrf_word_order;
  mo.bleu.tokenize = opts.bleu_tokenize;
  if (opts.metric == "rouge" && mo.rouge.tokenizer == eval::RougeTokenizer::unicode && !opts.no_stemmer) {
    log::debug("the unicode ROUGE tokenizer never stems; --no-stemmer is implied");
  }
  return mo;
}

Json run_eval(const EvalOptions& opts) {
  if (!opts.lang.empty() && !(opts.metric == "em_f1" && opts.normalize == "mlqa"))
    log::warn("--lang " + opts.lang + " is ignored: only --metric em_f1 --normalize mlqa uses a language");
  if (opts.metric == "em_f1") return run_em_f1(opts);
  return run_text_metric(opts);
}

}  // namespace

void add_eval_command(CLI::App& app, Registry& registry, const GlobalOptions& global) {
  auto opts = std::make_shared<EvalOptions>();
  auto* sub =
      app.add_subcommand("eval", "Score a model, or a predictions file, with EM/F1, ROUGE, BLEU or chrF");
  sub->add_option(
         "--metric", opts->metric,
         "em_f1 (extractive QA), rouge (rouge-score F/P/R, reported x100: \"scale\": 100), bleu (sacrebleu "
         "BLEU()) or chrf (sacrebleu CHRF())")
      ->check(CLI::IsMember({"em_f1", "rouge", "bleu", "chrf"}))
      ->capture_default_str();
  sub->add_option(
         "--predictions", opts->predictions,
         "em_f1: predictions JSONL, {\"id\", \"prediction_text\"[, \"no_answer_probability\"]} per line; "
         "rouge/bleu/chrf: one segment per line, or JSONL with --field")
      ->check(CLI::ExistingFile);
  sub->add_option("--references", opts->references,
                  "em_f1: the prepared MRC JSONL; rouge/bleu/chrf: a reference file, one segment per line "
                  "(repeat for several references per segment)")
      ->check(CLI::ExistingFile);
  sub->add_option(
      "--field", opts->field,
      "rouge/bleu/chrf on JSONL: the field holding the text on both sides (a reference field may be "
      "a list of strings = several references; without --references both come from --predictions)");
  sub->add_option("--prediction-field", opts->prediction_field,
                  "JSONL: the predictions' field, if not --field");
  sub->add_option("--reference-field", opts->reference_field, "JSONL: the references' field, if not --field");
  sub->add_option("--rouge-tokenizer", opts->rouge_tokenizer,
                  "default (rouge-score's: ASCII a-z0-9 words, so Vietnamese words fall apart) or unicode "
                  "(NFC + case folding, Unicode letter/number/mark words; never stems)")
      ->check(CLI::IsMember({"default", "unicode"}))
      ->capture_default_str();
  sub->add_flag(
      "--no-stemmer", opts->no_stemmer,
      "rouge: no Porter stemming. The stemmer is ON by default here (RougeScorer(use_stemmer=True), "
      "as most papers report); rouge-score's and HF evaluate's own default is off");
  sub->add_option(
         "--bleu-tokenize", opts->bleu_tokenize,
         "bleu: sacrebleu tokenizer 13a (its default), intl (mteval-v14, Unicode punctuation) or none")
      ->check(CLI::IsMember({"13a", "intl", "none"}))
      ->capture_default_str();
  sub->add_option("--chrf-word-order", opts->chrf_word_order, "chrf: word n-gram order; 2 gives chrF++")
      ->check(CLI::Range(0, 6))
      ->capture_default_str();
  sub->add_option("--normalize", opts->normalize,
                  "answer normalisation: squad (the official script, ASCII punctuation and English articles) "
                  "or mlqa (Unicode punctuation and per-language articles; right for Vietnamese)")
      ->check(CLI::IsMember({"squad", "mlqa"}))
      ->capture_default_str();
  sub->add_option("--lang", opts->lang,
                  "language of the mlqa normalisation (required with it): vi, en, es, de, ar, hi, zh");
  sub->add_option("--squad-version", opts->version, "auto (v2 when any question is unanswerable), v1 or v2")
      ->capture_default_str();
  sub->add_option("--na-threshold", opts->na_threshold,
                  "v2: no_answer_probability above this predicts no answer")
      ->capture_default_str();
  sub->add_option("--model", opts->model, "model folder to evaluate");
  sub->add_option("--source-template", opts->source_template,
                  "T5 with --model: encoder input, {source} replaced");
  sub->add_option("--target-template", opts->target_template,
                  "T5 with --model: reference, {target} replaced");
  sub->add_option("--num-beams", opts->num_beams, "T5 with --model: beam search width")
      ->capture_default_str();
  sub->add_option("--max-new-tokens", opts->max_new_tokens, "T5 with --model: tokens generated")
      ->capture_default_str();
  sub->add_option("--batch-size", opts->batch_size, "with --model: inputs per batch")->capture_default_str();
  sub->add_option("--dtype", opts->dtype, "with --model: fp32, bf16 or fp16")->capture_default_str();
  sub->add_option("--attn-implementation", opts->attn_implementation,
                  "with --model: sdpa (fused kernels) or eager (transformers' reference form)")
      ->capture_default_str();
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
      "  qlora eval --metric bleu --predictions hyp.txt --references ref.txt --references ref2.txt\n"
      "  qlora eval --metric rouge --predictions out.jsonl --field summary --references gold.jsonl "
      "--rouge-tokenizer unicode\n"
      "Default normalisation is squad, so scores equal Hugging Face evaluate's squad/squad_v2 and\n"
      "published numbers; it keeps Vietnamese letters but only strips ASCII punctuation and English\n"
      "articles. --normalize mlqa --lang vi is the MLQA script's rule for Vietnamese.\n"
      "ROUGE is rouge-score 0.1.2 per example (the mean of P/R/F, not its bootstrap aggregate), with\n"
      "the Porter stemmer on unless --no-stemmer; use --rouge-tokenizer unicode for Vietnamese.\n"
      "BLEU and chrF equal sacrebleu 2.6.0 corpus scores; the JSON carries sacrebleu's signature.\n"));
  registry.add(sub, [opts] { return run_eval(*opts); });
}

}  // namespace qlora::cli
