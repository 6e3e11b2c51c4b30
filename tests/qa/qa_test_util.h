// Fixtures of tools/gen_qa_fixtures.py: MRC records, run_qa features and utils_qa post-processing
// from transformers 5.17 / tokenizers (windows as tokenizers 0.22.2, see the generator's docstring).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "qlora/core/jsonl.h"
#include "qlora/qa/features.h"
#include "qlora/tokenizer/tokenizer.h"

namespace qlora::qa::test {

inline const std::string kQaFixtures = std::string(QLORA_FIXTURES_DIR) + "/qa";
inline const std::vector<std::string> kFeatureFiles = {"features_64_16.json", "features_96_32.json"};

inline const Tokenizer& xlmr_tokenizer() {
  static const std::unique_ptr<Tokenizer> tokenizer =
      load_tokenizer(std::string(QLORA_FIXTURES_DIR) + "/tokenizers/xlmr-viwiki");
  return *tokenizer;
}

inline const std::vector<QaExample>& fixture_examples() {
  static const std::vector<QaExample> examples = read_qa_examples(kQaFixtures + "/records.jsonl");
  return examples;
}

inline Json load_case(const std::string& file) { return read_json_file(kQaFixtures + "/" + file); }

inline QaFeatureOptions case_options(const Json& fixture) {
  QaFeatureOptions options;
  options.max_seq_length = fixture["config"]["max_seq_length"].get<int64_t>();
  options.doc_stride = fixture["config"]["doc_stride"].get<int64_t>();
  return options;
}

// Row f of a flat [N, T] array.
inline std::vector<int64_t> row(const std::vector<int64_t>& flat, int64_t T, size_t f) {
  return std::vector<int64_t>(flat.begin() + static_cast<std::ptrdiff_t>(f * T),
                              flat.begin() + static_cast<std::ptrdiff_t>((f + 1) * T));
}

// The fixture's logits: 3-decimal doubles that numpy cast to float32; the same cast here.
inline std::vector<std::vector<float>> logits(const Json& fixture, const char* key) {
  std::vector<std::vector<float>> rows;
  for (const Json& feature : fixture["features"]) {
    std::vector<float> r;
    for (const Json& x : feature[key]) r.push_back(static_cast<float>(x.get<double>()));
    rows.push_back(std::move(r));
  }
  return rows;
}

}  // namespace qlora::qa::test
