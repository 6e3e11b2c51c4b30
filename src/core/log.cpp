#include "qlora/core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "qlora/core/error.h"
#include "qlora/core/suggest.h"

namespace qlora::log {

namespace {

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto l = spdlog::stderr_color_mt("qlora");
    l->set_pattern("[%H:%M:%S] [%^%l%$] %v");
    return l;
  }();
  return *instance;
}

}  // namespace

void init(const std::string& level) {
  const auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    fail("--log-level: unknown level '" + level + "'" +
         did_you_mean(level, {"trace", "debug", "info", "warn", "error", "off"}));
  }
  logger().set_level(parsed);
}

bool enabled(const std::string& level) { return logger().should_log(spdlog::level::from_str(level)); }

void debug(const std::string& message) { logger().debug(message); }
void info(const std::string& message) { logger().info(message); }
void warn(const std::string& message) { logger().warn(message); }
void error(const std::string& message) { logger().error(message); }

}  // namespace qlora::log
