// Greedy and beam search on the tiny T5 fixtures against transformers 5.17 generate() outputs
// (tools/gen_t5_fixtures.py: hf_outputs.json): a padded batch of 3 inputs, 32 new tokens, num_beams 4 with
// length_penalty 1.0 / 0.6, early_stopping False / True / "never", no_repeat_ngram_size 2.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "qlora/core/fs.h"
#include "qlora/core/jsonl.h"
#include "qlora/infer/seq2seq_generate.h"
#include "qlora/io/safetensors.h"
#include "qlora/models/t5.h"
#include "qlora/tokenizer/tokenizer.h"

namespace qlora::infer {
namespace {

std::string fixture(const std::string& name) { return std::string(QLORA_FIXTURES_DIR) + "/models/" + name; }

Json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return Json::parse(in);
}

GenerationConfig settings_of(const Json& s) {
  GenerationConfig g;
  g.max_new_tokens = 32;
  g.eos_token_ids = {1};
  g.pad_token_id = 0;
  g.decoder_start_token_id = 0;
  g.num_beams = s.at("num_beams").get<int64_t>();
  g.length_penalty = s.value("length_penalty", 1.0);
  g.no_repeat_ngram_size = s.value("no_repeat_ngram_size", 0);
  if (s.contains("early_stopping")) {
    const Json& e = s.at("early_stopping");
    if (e.is_string()) {
      g.early_stopping = GenerationConfig::EarlyStopping::kNever;
    } else {
      g.early_stopping =
          e.get<bool>() ? GenerationConfig::EarlyStopping::kTrue : GenerationConfig::EarlyStopping::kFalse;
    }
  }
  return g;
}

at::Tensor ids_of(const Json& rows) {
  std::vector<int64_t> flat;
  for (const Json& r : rows) {
    for (const Json& v : r) flat.push_back(v.get<int64_t>());
  }
  return at::tensor(flat, at::TensorOptions().dtype(at::kLong)).view({static_cast<int64_t>(rows.size()), -1});
}

void check_model(const std::string& name) {
  const models::T5Model model = models::load_t5(fixture(name));
  const SafetensorsFile dump = SafetensorsFile::open(fixture(name) + "/hf_outputs.safetensors");
  const at::Tensor ids = dump.tensor("enc.input_ids"), mask = dump.tensor("enc.attention_mask");
  const Json runs = read_json(fixture(name) + "/hf_outputs.json");
  for (const auto& [run, expected] : runs.items()) {
    SCOPED_TRACE(name + " " + run);
    const Seq2SeqGeneration out = seq2seq_generate(model, ids, mask, settings_of(expected.at("settings")));
    const at::Tensor want = ids_of(expected.at("sequences"));
    ASSERT_EQ(out.sequences.sizes(), want.sizes());
    // Token ids: exact. The fixtures were checked for near-ties (greedy top-2 gaps >= 1.7e-3, far above
    // the ~1e-5 logit differences).
    EXPECT_TRUE(at::equal(out.sequences, want)) << out.sequences << "\nexpected\n" << want;
    if (expected.contains("sequences_scores")) {
      std::vector<float> scores;
      for (const Json& s : expected.at("sequences_scores")) scores.push_back(s.get<float>());
      const double diff = (out.sequences_scores - at::tensor(scores)).abs().max().item<double>();
      std::printf("[ parity   ] %s %s sequences_scores max|diff| = %.3g\n", name.c_str(), run.c_str(), diff);
      EXPECT_LE(diff, 1e-4);  // sums of up to 32 fp32 log-probs, each within ~1e-6
    }
  }
}

TEST(Seq2SeqGenerate, T5V10MatchesTransformers) { check_model("t5_v1_0"); }
TEST(Seq2SeqGenerate, T5V11MatchesTransformers) { check_model("t5_v1_1"); }
TEST(Seq2SeqGenerate, MT5MatchesTransformers) { check_model("t5_mt5"); }

TEST(Seq2SeqGenerate, SingleInputEqualsItsRowOfTheBatch) {
  const models::T5Model model = models::load_t5(fixture("t5_v1_1"));
  const SafetensorsFile dump = SafetensorsFile::open(fixture("t5_v1_1") + "/hf_outputs.safetensors");
  const Json runs = read_json(fixture("t5_v1_1") + "/hf_outputs.json");
  const at::Tensor mask = dump.tensor("enc.attention_mask").narrow(0, 2, 1);
  const int64_t n = mask.sum().item<int64_t>();  // the shortest input, without its padding
  const at::Tensor ids = dump.tensor("enc.input_ids").narrow(0, 2, 1).narrow(1, 0, n);
  const Seq2SeqGeneration out =
      seq2seq_generate(model, ids, {}, settings_of(runs.at("beam4_lp1").at("settings")));
  const at::Tensor row = ids_of(runs.at("beam4_lp1").at("sequences")).narrow(0, 2, 1);
  // The batch output is padded to the longest row: compare the common prefix and require padding after.
  const int64_t L = out.sequences.size(1);
  ASSERT_LE(L, row.size(1));
  EXPECT_TRUE(at::equal(out.sequences, row.narrow(1, 0, L)));
}

TEST(Seq2SeqGenerate, BansRepeatedNgrams) {
  const at::Tensor seq = at::tensor({0, 5, 6, 5}, at::TensorOptions().dtype(at::kLong)).view({1, 4});
  at::Tensor scores = at::zeros({1, 8});
  ban_repeated_ngrams(seq, scores, 2);  // "5 6" seen: after a trailing 5, 6 is banned
  EXPECT_TRUE(std::isinf(scores[0][6].item<float>()));
  EXPECT_EQ(scores.isinf().sum().item<int64_t>(), 1);
}

// The tokenizer of t5-small loads through load_tokenizer (tokenization itself is tested elsewhere).
TEST(Seq2SeqGenerate, T5SmallTokenizerLoads) {
  const std::string dir = std::string(QLORA_SOURCE_DIR) + "/../shared/data/tokenizers/t5-small";
  if (!fsys::exists(dir)) GTEST_SKIP() << "absent: " << dir;
  const auto tok = load_tokenizer(dir);
  EXPECT_EQ(tok->kind(), TokenizerKind::kT5);
  EXPECT_EQ(tok->special_ids().pad, 0);
  EXPECT_EQ(tok->special_ids().eos, 1);
}

}  // namespace
}  // namespace qlora::infer
