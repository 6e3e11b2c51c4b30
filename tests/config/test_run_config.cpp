#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "error_of.h"
#include "qlora/config/run_config.h"
#include "qlora/core/error.h"

namespace {

using qlora::Error;
using qlora::config::load_run_config;

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

using qlora_test::error_of;

TEST(RunConfig, DefaultsWithoutFile) {
  const auto c = load_run_config("", {});
  EXPECT_EQ(c.data.max_seq_length, 384);
  EXPECT_EQ(c.data.doc_stride, 128);
  EXPECT_EQ(c.adapter.r, 8);
  EXPECT_EQ(c.train.lr_scheduler, "linear");
}

TEST(RunConfig, YamlThenOverridesWin) {
  const auto path = write_temp("cfg_ok.yaml",
                               "model:\n  path: /m\n  dtype: bf16\n"
                               "adapter:\n  r: 16\n  target_modules: [query, key, value]\n"
                               "train:\n  learning_rate: 3e-4\n  epochs: 2\n");
  const auto c = load_run_config(path, {"train.learning_rate=1e-4", "adapter.target_modules=dense"});
  EXPECT_EQ(c.model.path, "/m");
  EXPECT_EQ(c.model.dtype, "bf16");
  EXPECT_EQ(c.adapter.r, 16);
  EXPECT_DOUBLE_EQ(c.train.learning_rate, 1e-4);
  EXPECT_DOUBLE_EQ(c.train.epochs, 2);
  ASSERT_EQ(c.adapter.target_modules.size(), 1u);
  EXPECT_EQ(c.adapter.target_modules[0], "dense");
}

TEST(RunConfig, YamlBlockListAndEmptySection) {
  const auto path =
      write_temp("cfg_list.yaml", "quantization:\nadapter:\n  target_modules:\n    - q\n    - v\n");
  const auto c = load_run_config(path, {});
  ASSERT_EQ(c.adapter.target_modules.size(), 2u);
  EXPECT_EQ(c.adapter.target_modules[1], "v");
}

TEST(RunConfig, UnknownKeyNamesFileLineAndSuggests) {
  const auto path = write_temp("cfg_typo.yaml", "train:\n  epochs: 1\n  learning_rat: 1e-4\n");
  const auto msg = error_of([&] { load_run_config(path, {}); });
  EXPECT_NE(msg.find("cfg_typo.yaml:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train.learning_rat"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'train.learning_rate'"), std::string::npos) << msg;
}

TEST(RunConfig, UnknownSectionSuggests) {
  const auto path = write_temp("cfg_section.yaml", "adaptr:\n  r: 4\n");
  const auto msg = error_of([&] { load_run_config(path, {}); });
  EXPECT_NE(msg.find("cfg_section.yaml:1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'adapter'"), std::string::npos) << msg;
}

TEST(RunConfig, BadValueNamesKeyAndType) {
  const auto path = write_temp("cfg_bad.yaml", "adapter:\n  r: eight\n");
  const auto msg = error_of([&] { load_run_config(path, {}); });
  EXPECT_NE(msg.find("cfg_bad.yaml:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("adapter.r"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected an integer"), std::string::npos) << msg;
}

TEST(RunConfig, BadChoiceSuggests) {
  const auto msg = error_of([] { load_run_config("", {"train.lr_scheduler=cosin"}); });
  EXPECT_NE(msg.find("--set train.lr_scheduler"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'cosine'"), std::string::npos) << msg;
}

TEST(RunConfig, AttnImplementationDefaultsToSdpaAndRejectsOthers) {
  EXPECT_EQ(load_run_config("", {}).model.attn_implementation, "sdpa");
  EXPECT_EQ(load_run_config("", {"model.attn_implementation=eager"}).model.attn_implementation, "eager");
  const auto msg = error_of([] { load_run_config("", {"model.attn_implementation=flash"}); });
  EXPECT_NE(msg.find("model.attn_implementation"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'flash' is not one of sdpa, eager"), std::string::npos) << msg;
}

TEST(RunConfig, OverrideUnknownKeyAndMissingEquals) {
  EXPECT_NE(error_of([] { load_run_config("", {"train.seeds=3"}); }).find("did you mean 'train.seed'"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_run_config("", {"train.seed"}); }).find("expected section.key=value"),
            std::string::npos);
}

TEST(RunConfig, DuplicateKeyIsAnError) {
  const auto path = write_temp("cfg_dup.yaml", "train:\n  seed: 1\n  seed: 2\n");
  const auto msg = error_of([&] { load_run_config(path, {}); });
  EXPECT_NE(msg.find("duplicate key 'train.seed'"), std::string::npos) << msg;
}

TEST(RunConfig, MalformedYamlNamesLine) {
  const auto path = write_temp("cfg_malformed.yaml", "train:\n  seed: [1, 2\n");
  const auto msg = error_of([&] { load_run_config(path, {}); });
  EXPECT_NE(msg.find("cfg_malformed.yaml:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("malformed YAML"), std::string::npos) << msg;
}

TEST(RunConfig, MissingFileIsAnError) {
  const auto msg = error_of([] { load_run_config("/nonexistent/cfg.yaml", {}); });
  EXPECT_NE(msg.find("/nonexistent/cfg.yaml"), std::string::npos) << msg;
}

TEST(RunConfig, CrossFieldValidation) {
  EXPECT_NE(error_of([] { load_run_config("", {"data.doc_stride=400"}); }).find("data.doc_stride"),
            std::string::npos);
  EXPECT_NE(error_of([] { load_run_config("", {"quantization.blocksize=48"}); }).find("power of two"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              load_run_config("", {"quantization.load_in_4bit=true", "quantization.load_in_8bit=true"});
            }).find("load_in_8bit"),
            std::string::npos);
  EXPECT_NE(
      error_of([] { load_run_config("", {"train.loss_chunk_tokens=-1"}); }).find("train.loss_chunk_tokens"),
      std::string::npos);
  EXPECT_EQ(load_run_config("", {"train.loss_chunk_tokens=0"}).train.loss_chunk_tokens, 0);  // 0: off
}

TEST(RunConfig, ShippedConfigsLoad) {
  for (const char* name : {"xlmr_vi_qa.yaml", "demo_xlmr_tiny.yaml"}) {
    const std::string path = std::string(QLORA_SOURCE_DIR) + "/configs/" + name;
    EXPECT_NO_THROW(load_run_config(path, {})) << path;
  }
}

}  // namespace
