// qlora train: fine-tune a model from a YAML config with --set overrides.
#include "command.h"
#include "qlora/config/run_config.h"
#include "qlora/core/error.h"

namespace qlora::cli {

namespace {

struct TrainOptions {
  std::string config_path;
  std::vector<std::string> overrides;
  bool dry_run = false;
  bool list_keys = false;
};

Json run_train(const TrainOptions& opts) {
  if (opts.list_keys) {
    config::RunConfig defaults;
    const auto schema = config::bind_schema(defaults);
    Json keys = Json::array();
    for (const auto& f : schema.fields()) keys.push_back({{"key", f.key}, {"default", f.get()}, {"doc", f.doc}});
    return {{"keys", keys}};
  }
  config::RunConfig cfg = config::load_run_config(opts.config_path, opts.overrides);
  config::RunConfig copy = cfg;
  Json result = {{"config", config::bind_schema(copy).to_json()}};
  if (opts.dry_run) {
    result["dry_run"] = true;
    return result;
  }
  if (cfg.model.path.empty()) fail("config key 'model.path' is required to train");
  fail("the training engine is not implemented yet (tracked in issue #3); use --dry-run to check a config");
}

}  // namespace

void add_train_command(CLI::App& app, Registry& registry, const GlobalOptions& global) {
  auto opts = std::make_shared<TrainOptions>();
  auto* sub = app.add_subcommand("train", "Fine-tune a model (LoRA, QLoRA or full) from a YAML config");
  sub->add_option("-c,--config", opts->config_path, "YAML config file (see configs/)")->check(CLI::ExistingFile);
  sub->add_option("--set", opts->overrides, "Override a config key: --set train.learning_rate=1e-4 (repeatable)");
  sub->add_flag("--dry-run", opts->dry_run, "Load and validate the config, print it resolved, and stop");
  sub->add_flag("--list-keys", opts->list_keys, "List every config key with its default and meaning");
  config::RunConfig defaults;
  sub->footer(example_footer(
                  "  qlora train --config configs/xlmr_vi_qa.yaml --set train.learning_rate=1e-4\n"
                  "  qlora train --config configs/xlmr_vi_qa.yaml --dry-run --json\n") +
              "\nConfig keys (YAML section.key, or --set section.key=value):\n" +
              config::bind_schema(defaults).describe());
  registry.add(sub, [opts] { return run_train(*opts); });
}

}  // namespace qlora::cli
