// qlora prepare: convert raw datasets into the documented JSONL formats (docs/DATA_FORMATS.md).
#include "command.h"
#include "qlora/core/log.h"
#include "qlora/data/instruct.h"
#include "qlora/data/pairs.h"
#include "qlora/data/squad.h"

namespace qlora::cli {

namespace {

// Warnings go to the log as well as into the JSON result.
void log_warnings(const data::Warnings& warnings) {
  for (const auto& w : warnings.messages()) log::warn(w);
  if (warnings.suppressed() > 0) {
    log::warn("... and " + std::to_string(warnings.suppressed()) +
              " more warnings (see --json output counts)");
  }
}

struct SquadCliOptions {
  data::SquadToMrcOptions lib;
  bool fix_offsets = false;
  bool strict = false;
};

Json run_squad(SquadCliOptions& opts) {
  opts.lib.offset_mode = opts.strict        ? data::OffsetMode::strict
                         : opts.fix_offsets ? data::OffsetMode::fix_offsets
                                            : data::OffsetMode::drop;
  // Real datasets repeat or omit ids (nanibot-vi does both); rename them with a warning unless strict.
  opts.lib.repair_ids = !opts.strict;
  const auto result = data::squad_to_mrc(opts.lib);
  log_warnings(result.warnings);
  const auto& c = result.counts;
  log::info("squad_to_mrc: " + std::to_string(c.questions) + " questions, " +
            std::to_string(c.mismatched_offsets) + " mismatched answer offsets, " + std::to_string(c.fixed) +
            " fixed, " + std::to_string(c.records_dropped) + " records dropped, " +
            std::to_string(c.written) + " written to " + opts.lib.output);
  Json out = result.to_json();
  out["output"] = opts.lib.output;
  out["offset_mode"] = data::offset_mode_name(opts.lib.offset_mode);
  return out;
}

void add_squad(CLI::App& prepare, Registry& registry) {
  auto opts = std::make_shared<SquadCliOptions>();
  auto* sub =
      prepare.add_subcommand("squad_to_mrc", "SQuAD v1.1/v2.0 JSON -> MRC JSONL, validating every answer");
  sub->add_option("-i,--input", opts->lib.inputs, "SQuAD-format JSON file(s), converted in order")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("-o,--output", opts->lib.output, "MRC JSONL output (written atomically)")->required();
  auto* fix =
      sub->add_flag("--fix-offsets", opts->fix_offsets,
                    "Move an answer whose answer_start is wrong to the nearest occurrence of its text");
  sub->add_flag("--strict", opts->strict,
                "Fail on the first wrong answer_start or missing/repeated question id instead of dropping "
                "the answer or renaming the id")
      ->excludes(fix);
  sub->add_option("--keep-plausible-answers", opts->lib.keep_plausible_answers,
                  "Keep SQuAD v2 plausible_answers in their own field")
      ->capture_default_str();
  sub->footer(example_footer(
      "  qlora prepare squad_to_mrc --input UIT-ViQuAD2.0/train.json --output data/vi_qa/all.jsonl "
      "--fix-offsets\n"
      "Without --fix-offsets or --strict, answers whose text is not at answer_start are dropped with a\n"
      "warning naming the question id; missing or repeated ids are renamed (X#2) with a warning.\n"
      "Text is NFC-normalised; offsets are code points.\n"));
  registry.add(sub, [opts] { return run_squad(*opts); });
}

void add_alpaca(CLI::App& prepare, Registry& registry) {
  auto opts = std::make_shared<data::InstructOptions>();
  auto* sub = prepare.add_subcommand(
      "alpaca",
      "Alpaca {instruction,input,output} JSON/JSONL or {prompt,response} JSONL -> instruction JSONL");
  sub->add_option("-i,--input", opts->inputs, "input file(s): a JSON array or JSONL")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("-o,--output", opts->output, "instruction JSONL output (written atomically)")->required();
  sub->add_flag("--skip-invalid", opts->skip_invalid,
                "Skip invalid records with a warning instead of failing");
  sub->add_option("--unwrap-alpaca-prompt", opts->unwrap_alpaca_prompt,
                  "Split a {prompt} that already holds the Alpaca template back into instruction/input")
      ->capture_default_str();
  sub->footer(
      example_footer("  qlora prepare alpaca --input vi_alpaca.json --output data/instruct/train.jsonl\n"));
  registry.add(sub, [opts] {
    const auto result = data::prepare_instruct(*opts);
    log_warnings(result.warnings);
    Json out = result.to_json();
    out["output"] = opts->output;
    return out;
  });
}

void add_pairs(CLI::App& prepare, Registry& registry) {
  auto opts = std::make_shared<data::PairsOptions>();
  auto* sub =
      prepare.add_subcommand("pairs", "Source/target text pairs (JSONL or two parallel text files) -> JSONL");
  sub->add_option("-i,--input", opts->inputs, "JSON/JSONL file(s) with source and target fields")
      ->check(CLI::ExistingFile);
  sub->add_option("--source-field", opts->source_field, "field holding the source text")
      ->capture_default_str();
  sub->add_option("--target-field", opts->target_field, "field holding the target text")
      ->capture_default_str();
  sub->add_option("--source-text", opts->source_text, "plain text file, one source segment per line")
      ->check(CLI::ExistingFile);
  sub->add_option("--target-text", opts->target_text, "plain text file, one target segment per line")
      ->check(CLI::ExistingFile);
  sub->add_option("-o,--output", opts->output, "pairs JSONL output (written atomically)")->required();
  sub->add_flag("--skip-invalid", opts->skip_invalid,
                "Skip invalid records with a warning instead of failing");
  sub->footer(example_footer(
      "  qlora prepare pairs --input rewrite.jsonl --source-field question --target-field rewrite --output "
      "pairs.jsonl\n"
      "  qlora prepare pairs --source-text src.txt --target-text tgt.txt --output pairs.jsonl\n"));
  registry.add(sub, [opts] {
    const auto result = data::prepare_pairs(*opts);
    log_warnings(result.warnings);
    Json out = result.to_json();
    out["output"] = opts->output;
    return out;
  });
}

}  // namespace

void add_prepare_command(CLI::App& app, Registry& registry, const GlobalOptions& global) {
  auto* prepare = app.add_subcommand("prepare", "Convert raw datasets into qlora's JSONL formats");
  prepare->require_subcommand(1);
  prepare->fallthrough();
  prepare->footer(
      example_footer("  qlora prepare squad_to_mrc --input train.json --output train.jsonl\n"
                     "  qlora prepare alpaca --input alpaca.json --output instruct.jsonl\n"
                     "  qlora prepare pairs --input pairs.jsonl --output pairs.out.jsonl\n"));
  add_squad(*prepare, registry);
  add_alpaca(*prepare, registry);
  add_pairs(*prepare, registry);
}

}  // namespace qlora::cli
