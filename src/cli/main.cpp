// qlora: LoRA / QLoRA fine-tuning toolkit. This file owns global options, logging setup, error
// reporting and the --json contract; each subcommand lives in cmd_<name>.cpp.
#include <ATen/Parallel.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <set>
#include <thread>
#include <utility>

#include "command.h"
#include "qlora/core/error.h"
#include "qlora/core/log.h"

namespace qlora::cli {

std::string example_footer(const std::string& examples) { return "\nExample:\n" + examples; }

namespace {

// Human-readable rendering of a result object: "key: value" lines, nested objects flattened to
// "key.sub: value". Warnings were already logged to stderr, so they are not repeated.
void print_summary(const Json& value, const std::string& prefix = "") {
  for (const auto& [key, item] : value.items()) {
    if (prefix.empty() && (key == "ok" || key == "warnings" || key == "warnings_suppressed")) continue;
    const std::string name = prefix.empty() ? key : prefix + "." + key;
    if (item.is_object()) {
      print_summary(item, name);
    } else {
      std::cout << name << ": " << (item.is_string() ? item.get<std::string>() : item.dump()) << "\n";
    }
  }
}

// One line on stderr; under --json also {"error": ...} as the last stdout line.
void report_failure(const GlobalOptions& global, const std::string& kind, const std::string& message) {
  std::cerr << "qlora: " << kind << ": " << message << std::endl;
  if (global.json) {
    std::cout << Json{{"ok", false}, {"error", message}}.dump(-1, ' ', false, Json::error_handler_t::replace)
              << std::endl;
  }
}

// Physical cores: distinct (package, core) pairs in /sys topology, else in /proc/cpuinfo, else
// hardware_concurrency (which counts SMT siblings).
int physical_cores() {
  std::set<std::pair<std::string, std::string>> cores;
  for (int cpu = 0;; ++cpu) {
    const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream package(dir + "physical_package_id"), core(dir + "core_id");
    std::string p, c;
    if (!(package >> p) || !(core >> c)) break;
    cores.insert({p, c});
  }
  if (cores.empty()) {
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line, package;
    while (std::getline(cpuinfo, line)) {
      const auto value = [&] { return line.substr(line.find(':') + 1); };
      if (line.rfind("physical id", 0) == 0) package = value();
      if (line.rfind("core id", 0) == 0) cores.insert({package, value()});
    }
  }
  if (!cores.empty()) return static_cast<int>(cores.size());
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app{"qlora: fine-tune transformer models with LoRA and QLoRA (C++ / libtorch)", "qlora"};
  app.set_version_flag("--version", "qlora 0.1.0");
  app.require_subcommand(1);
  app.fallthrough();
  GlobalOptions global;
  app.add_flag("--json", global.json, "Print the result as one JSON object on the last stdout line");
  app.add_option("--log-level", global.log_level,
                 "trace, debug, info, warn, error or off (logs go to stderr)")
      ->capture_default_str();
  int threads = 0;
  app.add_option("--threads", threads,
                 "CPU threads for torch ops (at::set_num_threads; default: the number of physical cores)")
      ->check(CLI::PositiveNumber);
  app.footer(
      "\nWorkflow:\n"
      "  qlora prepare squad_to_mrc --input train.json --output train.jsonl\n"
      "  qlora split --input train.jsonl --train t.jsonl --valid v.jsonl --valid-ratio 0.1\n"
      "  qlora train --config configs/xlmr_vi_qa.yaml\n"
      "Run 'qlora SUBCOMMAND --help' for each subcommand's options.");

  Registry registry;
  add_prepare_command(app, registry, global);
  add_split_command(app, registry, global);
  add_train_command(app, registry, global);
  add_eval_command(app, registry, global);
  add_infer_command(app, registry, global);
  add_export_command(app, registry, global);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // Usage errors exit 2, like most Unix tools; failures while running exit 1.
    report_failure(global, "usage error", e.what());
    std::cerr << "Run with --help for the options." << std::endl;
    return 2;
  }

  try {
    log::init(global.log_level);
    // Before any torch work: set_num_interop_threads may be called once, and only before parallel work.
    const int n = threads > 0 ? threads : physical_cores();
    at::set_num_threads(n);
    at::set_num_interop_threads(n);
    for (const auto& [subcommand, fn] : registry.commands()) {
      if (!subcommand->parsed()) continue;
      // A nested subcommand (prepare squad_to_mrc) registers itself; skip its parent.
      bool child_ran = false;
      for (const auto* child : subcommand->get_subcommands()) child_ran |= child->parsed();
      if (child_ran) continue;
      Json result = {{"ok", true}};
      result.update(fn());
      result["threads"] = at::get_num_threads();
      if (global.json) {
        std::cout << result.dump(-1, ' ', false, Json::error_handler_t::replace) << std::endl;
      } else {
        print_summary(result);
      }
      return 0;
    }
    fail("no subcommand to run");
  } catch (const Error& e) {
    report_failure(global, "error", e.what());
  } catch (const std::exception& e) {
    report_failure(global, "internal error", e.what());
  }
  return 1;
}

}  // namespace qlora::cli

int main(int argc, char** argv) { return qlora::cli::run(argc, argv); }
