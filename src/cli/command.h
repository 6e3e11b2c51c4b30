// How subcommands plug into main(): each cmd_<name>.cpp registers a CLI11 subcommand and a
// function that does the work and returns its result as one JSON object. main() prints that
// object as the last stdout line under --json, and a human summary otherwise.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <string>

#include "qlora/core/jsonl.h"

namespace qlora::cli {

struct GlobalOptions {
  bool json = false;
  std::string log_level = "info";
};

using CommandFn = std::function<Json()>;

class Registry {
 public:
  void add(CLI::App* subcommand, CommandFn fn) { commands_[subcommand] = std::move(fn); }
  const std::map<CLI::App*, CommandFn>& commands() const { return commands_; }

 private:
  std::map<CLI::App*, CommandFn> commands_;
};

// One per subcommand file.
void add_prepare_command(CLI::App& app, Registry& registry, const GlobalOptions& global);
void add_split_command(CLI::App& app, Registry& registry, const GlobalOptions& global);
void add_train_command(CLI::App& app, Registry& registry, const GlobalOptions& global);
void add_eval_command(CLI::App& app, Registry& registry, const GlobalOptions& global);
void add_infer_command(CLI::App& app, Registry& registry, const GlobalOptions& global);
void add_export_command(CLI::App& app, Registry& registry, const GlobalOptions& global);

// Formats an "Example:" footer for --help.
std::string example_footer(const std::string& examples);

}  // namespace qlora::cli
