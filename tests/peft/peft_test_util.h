// Shared helpers of the PEFT tests: fixture paths (tests/fixtures/peft, written by
// tools/gen_peft_fixtures.py), the tiny XLM-R QA model, temporary folders, and deterministic fills.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <string>
#include <vector>

#include "models/encoder_test_util.h"
#include "qlora/core/atomic_file.h"
#include "qlora/core/fs.h"
#include "qlora/core/jsonl.h"
#include "qlora/models/encoder.h"
#include "qlora/peft/lora_config.h"
#include "qlora/peft/lora_model.h"

namespace qlora::peft::testing {

using models::testing::expect_close;

// Cases of tools/gen_peft_fixtures.py, each a folder written by PEFT's save_pretrained.
inline const std::vector<std::string>& peft_cases() {
  static const std::vector<std::string> cases = {"list",     "regex",         "all_linear", "all_linear_qa",
                                                 "patterns", "layers",        "layers_int", "rslora",
                                                 "bias_all", "bias_lora_only"};
  return cases;
}

inline std::string peft_fixture(const std::string& name) {
  return std::string(QLORA_FIXTURES_DIR) + "/peft/" + name;
}
inline std::string base_model_dir() { return models::testing::model_dir("tiny-xlmr-qa"); }
// base_model_name_or_path in the fixtures (the generator runs from the repository root).
inline const char* kFixtureBaseModelPath = "tests/fixtures/models/tiny-xlmr-qa";

inline models::EncoderModel load_qa_model() {
  return models::load_encoder(base_model_dir(), {models::EncoderHead::kQuestionAnswering});
}

inline models::EncoderInputs padded_inputs() {
  return models::testing::inputs_of(models::testing::hf_outputs("tiny-xlmr-qa"), "padded", false);
}

inline Json read_json(const std::string& path) { return read_json_file(path); }

// The LoraConfig a fixture case was built from: its LoraConfig(**kwargs) arguments, read as a config.
inline LoraConfig case_config(const std::string& name) {
  const Json info = read_json(peft_fixture(name) + "/peft_info.json");
  LoraConfig c = lora_config_from_json(info.at("config_kwargs").dump(), name + "/peft_info.json");
  c.base_model_name_or_path = kFixtureBaseModelPath;
  return c;
}

inline std::vector<std::string> json_strings(const Json& j) {
  std::vector<std::string> out;
  for (const Json& s : j) out.push_back(s.get<std::string>());
  return out;
}

inline std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// A fresh folder under $TMPDIR (or /tmp), removed (flat, one level of subfolders) at scope exit.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/qlora_peft_XXXXXX";
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
    EXPECT_FALSE(path_.empty());
  }
  ~TempDir() { remove_tree(path_, 2); }
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return fsys::join(path_, name); }

 private:
  static void remove_tree(const std::string& dir, int depth) {
    if (dir.empty() || !fsys::is_directory(dir)) return;
    for (const std::string& name : fsys::list_directory(dir)) {
      const std::string p = fsys::join(dir, name);
      if (fsys::is_directory(p)) {
        if (depth > 0) remove_tree(p, depth - 1);
      } else {
        fsys::remove_file(p);
      }
    }
    ::rmdir(dir.c_str());
  }
  std::string path_;
};

inline void copy_file(const std::string& from, const std::string& to) {
  write_file_atomic(to, read_file(from));
}

// Deterministic values independent of any RNG: scale * sin(0.37 i + phase), i the flat index.
inline void fill_wave(at::Tensor& t, double scale, double phase) {
  at::NoGradGuard no_grad;
  const at::Tensor i = at::arange(t.numel(), at::kDouble);
  t.copy_((at::sin(i * 0.37 + phase) * scale).reshape(t.sizes()).to(t.scalar_type()));
}

}  // namespace qlora::peft::testing
