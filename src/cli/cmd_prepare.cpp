#include "command.h"
namespace qlora::cli {
void add_prepare_command(CLI::App& app, Registry& registry, const GlobalOptions& global) {}
void add_split_command(CLI::App& app, Registry& registry, const GlobalOptions& global) {}
}  // namespace qlora::cli
