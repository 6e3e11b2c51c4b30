// Shared by every test suite: the message of the qlora::Error an action throws.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "qlora/core/error.h"

namespace qlora_test {

// The message of the qlora::Error that `action` throws; a test failure when it throws none.
inline std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const qlora::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a qlora::Error";
  return "";
}

}  // namespace qlora_test
