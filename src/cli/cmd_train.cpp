// qlora train: fine-tune a model from a YAML config with --set overrides.
#include "command.h"
#include "qlora/config/run_config.h"
#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/core/log.h"
#include "qlora/io/hf_config.h"
#include "qlora/models/model_shape.h"
#include "qlora/tasks/memory_budget.h"
#include "qlora/tasks/qa_task.h"
#include "qlora/tasks/seq2seq_task.h"
#include "qlora/tasks/sft_task.h"

namespace qlora::cli {

namespace {

struct TrainOptions {
  std::string config_path;
  std::vector<std::string> overrides;
  bool dry_run = false;
  bool list_keys = false;
  std::string resume;
  std::string resume_adapter;
};

// The architecture family of a checkpoint folder, from model.family or config.json's model_type.
std::string model_family(const config::RunConfig& cfg) {
  if (cfg.model.family != "auto") return cfg.model.family;
  const std::string type = HfConfig::load(cfg.model.path).model_type();
  if (type == "xlm-roberta" || type == "roberta") return "xlmr";
  if (type == "bert") return "bert";
  if (type == "t5" || type == "mt5") return "t5";
  if (type == "llama" || type == "mistral" || type == "qwen2") return "llama";
  if (type == "mpt") return "mpt";
  fail(cfg.model.path + "/config.json: model_type '" + type + "' is not supported");
}

Json run_train(const TrainOptions& opts) {
  if (opts.list_keys) {
    config::RunConfig defaults;
    const auto schema = config::bind_schema(defaults);
    Json keys = Json::array();
    for (const auto& f : schema.fields())
      keys.push_back({{"key", f.key}, {"default", f.get()}, {"doc", f.doc}});
    return {{"keys", keys}};
  }
  std::vector<std::string> overrides = opts.overrides;
  if (!opts.resume_adapter.empty()) overrides.push_back("adapter.resume_adapter=" + opts.resume_adapter);
  config::RunConfig cfg = config::load_run_config(opts.config_path, overrides);
  config::RunConfig copy = cfg;
  Json result = {{"config", config::bind_schema(copy).to_json()}};
  if (opts.dry_run) {
    result["dry_run"] = true;
    // The memory budget needs only config.json, so a shape-only folder (configs/models/) works too.
    if (!cfg.model.path.empty() && fsys::exists(fsys::join(cfg.model.path, "config.json"))) {
      const auto shape = models::model_shape(HfConfig::load(cfg.model.path));
      const auto budget = tasks::memory_budget(cfg, shape);
      log::info("memory budget (micro batch " + std::to_string(cfg.train.micro_batch_size) + ", seq " +
                std::to_string(cfg.data.max_seq_length) + "):\n" + budget.to_table());
      result["memory"] = budget.to_json();
      result["total_bytes"] = budget.total_bytes();
    }
    return result;
  }
  if (cfg.model.path.empty()) fail("config key 'model.path' is required to train");
  const std::string family = model_family(cfg);
  if (cfg.task.type == "qa" && (family == "xlmr" || family == "bert")) {
    result.update(tasks::run_qa_training(cfg, opts.resume));
    return result;
  }
  if (cfg.task.type == "seq2seq" && family == "t5") {
    result.update(tasks::run_seq2seq_training(cfg, opts.resume));
    return result;
  }
  if (cfg.task.type == "causal_lm" && (family == "llama" || family == "mpt")) {
    result.update(tasks::run_sft_training(cfg, opts.resume));
    return result;
  }
  fail("task '" + cfg.task.type + "' on a '" + family +
       "' model is not supported (qa: xlmr/bert; seq2seq: t5; causal_lm: llama/mpt)");
}

}  // namespace

void add_train_command(CLI::App& app, Registry& registry, const GlobalOptions& global) {
  auto opts = std::make_shared<TrainOptions>();
  auto* sub = app.add_subcommand("train", "Fine-tune a model (LoRA, QLoRA or full) from a YAML config");
  sub->add_option("-c,--config", opts->config_path, "YAML config file (see configs/)")
      ->check(CLI::ExistingFile);
  sub->add_option("--set", opts->overrides,
                  "Override a config key: --set train.learning_rate=1e-4 (repeatable)");
  sub->add_flag("--dry-run", opts->dry_run,
                "Validate the config, print it resolved with a memory budget, and stop");
  sub->add_flag("--list-keys", opts->list_keys, "List every config key with its default and meaning");
  sub->add_option(
      "--resume", opts->resume,
      "Continue an interrupted run exactly: a checkpoint folder, or 'latest' in train.output_dir");
  sub->add_option("--resume-adapter", opts->resume_adapter,
                  "Continue training an existing PEFT adapter folder (PEFT's is_trainable=True)");
  config::RunConfig defaults;
  sub->footer(example_footer("  qlora train --config configs/xlmr_vi_qa.yaml --set train.learning_rate=1e-4\n"
                             "  qlora train --config configs/xlmr_vi_qa.yaml --dry-run --json\n"
                             "  qlora train --config configs/xlmr_vi_qa.yaml --resume latest\n") +
              "\nConfig keys (YAML section.key, or --set section.key=value):\n" +
              config::bind_schema(defaults).describe());
  registry.add(sub, [opts] { return run_train(*opts); });
}

}  // namespace qlora::cli
