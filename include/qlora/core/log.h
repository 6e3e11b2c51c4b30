// Logging to stderr. spdlog stays behind this header: torch ships its own newer fmt headers,
// which clash with the fmt that Debian's spdlog is built against, so no torch-facing file may
// include spdlog directly.
#pragma once

#include <string>

namespace qlora::log {

// Sets up the stderr logger; `level` is trace, debug, info, warn, error or off. Throws Error on
// an unknown level.
void init(const std::string& level);
bool enabled(const std::string& level);

void debug(const std::string& message);
void info(const std::string& message);
void warn(const std::string& message);
void error(const std::string& message);

}  // namespace qlora::log
