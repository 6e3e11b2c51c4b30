// qlora split: deterministic, group-aware train/valid split of a JSONL file.
#include "command.h"
#include "qlora/core/log.h"
#include "qlora/data/split.h"

namespace qlora::cli {

void add_split_command(CLI::App& app, Registry& registry, const GlobalOptions& global) {
  auto opts = std::make_shared<data::SplitOptions>();
  auto* sub = app.add_subcommand("split", "Split a JSONL file into train and valid, deterministically");
  sub->add_option("-i,--input", opts->input, "JSONL input (never modified)")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--train", opts->train_output, "train JSONL output (written atomically)")->required();
  sub->add_option("--valid", opts->valid_output, "valid JSONL output (written atomically)")->required();
  sub->add_option("--valid-ratio", opts->valid_ratio, "fraction of all records for valid")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  sub->add_option("--seed", opts->seed, "shuffle seed: same seed and input give the same files")
      ->capture_default_str();
  sub->add_option("--group-field", opts->group_field,
                  "records sharing this field's value stay together (auto: context for MRC data; none)")
      ->capture_default_str();
  sub->add_option("--valid-filter", opts->valid_filter, "FIELD=VALUE: only matching records may go to valid");
  sub->footer(example_footer(
      "  qlora split --input all.jsonl --train train.jsonl --valid valid.jsonl --valid-ratio 0.1 --seed 42\n"
      "  qlora split --input all.jsonl --train t.jsonl --valid v.jsonl --valid-filter lang=vi\n"
      "valid gets ceil(ratio * records) records (15466 at 0.1 -> 1547), or as close as whole groups "
      "allow.\n"));
  registry.add(sub, [opts] {
    const auto result = data::split(*opts);
    for (const auto& w : result.warnings.messages()) log::warn(w);
    log::info("split: " + std::to_string(result.records) + " records -> " + std::to_string(result.train) +
              " train / " + std::to_string(result.valid) + " valid");
    Json out = result.to_json();
    out["train_file"] = opts->train_output;
    out["valid_file"] = opts->valid_output;
    return out;
  });
}

}  // namespace qlora::cli
