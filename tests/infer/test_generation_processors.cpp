// Logits processors, sampling and generation_config.json against transformers 5.17 generate() on the tiny
// fixtures (tools/gen_generation_fixtures.py: tests/fixtures/infer/generation.json and
// models/t5_v1_1_genconfig). Token ids are compared exactly: fp32 models whose logits agree with HF to
// ~1e-5, far below the gaps between the chosen and the next-best scores; sampling draws from the same
// mt19937 stream (torch.manual_seed(seed) there, a CPU generator seeded with it here).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"
#include "qlora/infer/generate.h"
#include "qlora/infer/seq2seq_generate.h"
#include "qlora/io/safetensors.h"
#include "qlora/models/causal_lm.h"
#include "qlora/models/t5.h"

namespace qlora::infer {
namespace {

std::string model_dir(const std::string& name) { return std::string(QLORA_FIXTURES_DIR) + "/models/" + name; }

const Json& runs_of(const std::string& model) {
  static const Json all = read_json_file(std::string(QLORA_FIXTURES_DIR) + "/infer/generation.json");
  return all.at(model);
}

at::Tensor ids_of(const Json& rows) {
  std::vector<int64_t> flat;
  for (const Json& r : rows) {
    for (const Json& v : r) flat.push_back(v.get<int64_t>());
  }
  return at::tensor(flat, at::TensorOptions().dtype(at::kLong)).view({static_cast<int64_t>(rows.size()), -1});
}

GenerationConfig config_of(const Json& settings) {
  return GenerationConfig::from_json(HfConfig(settings, "settings"));
}

// log_softmax of each step's processed scores at the chosen id:
// compute_transition_scores(normalize_logits=True).
at::Tensor transition_scores(const std::vector<at::Tensor>& scores, const at::Tensor& chosen) {
  std::vector<at::Tensor> steps;
  for (size_t t = 0; t < scores.size(); ++t) {
    steps.push_back(
        at::log_softmax(scores[t], -1).gather(1, chosen.select(1, static_cast<int64_t>(t)).unsqueeze(1)));
  }
  return at::cat(steps, 1);
}

void expect_transition(const at::Tensor& ours, const Json& hf) {
  const at::Tensor want = at::empty({static_cast<int64_t>(hf.size()), static_cast<int64_t>(hf.at(0).size())});
  for (size_t b = 0; b < hf.size(); ++b) {
    for (size_t t = 0; t < hf.at(b).size(); ++t) {
      const Json& v = hf.at(b).at(t);
      want[static_cast<int64_t>(b)][static_cast<int64_t>(t)] = v.is_number() ? v.get<double>() : -INFINITY;
    }
  }
  ASSERT_EQ(ours.sizes(), want.sizes());
  const at::Tensor finite = want.isfinite() & ours.isfinite();
  EXPECT_TRUE(at::equal(finite, want.isfinite()));
  const double diff = (ours.index({finite}) - want.index({finite})).abs().max().item<double>();
  std::printf("[ parity   ] transition scores max|diff| = %.3g\n", diff);
  EXPECT_LE(diff, 1e-4);  // log-softmax of fp32 logits that agree with HF to ~1e-5
}

class T5Processors : public ::testing::TestWithParam<std::string> {};

TEST_P(T5Processors, MatchTransformersGenerate) {
  static const models::T5Model model = models::load_t5(model_dir("t5_v1_1"));
  const SafetensorsFile dump = SafetensorsFile::open(model_dir("t5_v1_1") + "/hf_outputs.safetensors");
  const Json& run = runs_of("t5_v1_1").at(GetParam());
  Seq2SeqOptions options;
  options.seed = run.value("seed", 0);
  options.output_scores = run.contains("transition");
  const Seq2SeqGeneration out =
      seq2seq_generate(model, dump.tensor("enc.input_ids"), dump.tensor("enc.attention_mask"),
                       config_of(run.at("settings")), options);
  const at::Tensor want = ids_of(run.at("sequences"));
  ASSERT_EQ(out.sequences.sizes(), want.sizes()) << out.sequences;
  EXPECT_TRUE(at::equal(out.sequences, want)) << out.sequences << "\nexpected\n" << want;
  if (run.contains("transition")) {
    expect_transition(transition_scores(out.scores, out.sequences.narrow(1, 1, out.sequences.size(1) - 1)),
                      run.at("transition"));
  }
}

INSTANTIATE_TEST_SUITE_P(Fixture, T5Processors,
                         ::testing::Values("greedy_scores", "min_new_tokens", "min_length",
                                           "min_new_tokens_4", "min_length_5", "bad_words", "suppress",
                                           "begin_suppress", "repetition_penalty",
                                           "encoder_repetition_penalty", "ngram3_penalty", "beam4_processors",
                                           "sample_seed5", "sample_seed123"));

class DecoderProcessors : public ::testing::TestWithParam<std::string> {};

TEST_P(DecoderProcessors, MatchTransformersGenerate) {
  static const auto model = models::load_causal_lm(model_dir("llama_llama3"));
  const SafetensorsFile dump = SafetensorsFile::open(model_dir("llama_llama3") + "/hf_outputs.safetensors");
  const at::Tensor ids = dump.tensor("greedy.prompt_ids"), mask = dump.tensor("greedy.prompt_mask");
  const Json& run = runs_of("llama_llama3").at(GetParam());
  GenerateOptions o = generate_options_from(config_of(run.at("settings")), ids.size(1));
  o.seed = run.value("seed", 0);
  o.output_scores = run.contains("transition");
  const GenerateResult r = generate(*model, ids, mask, o);
  const at::Tensor want = ids_of(run.at("sequences"));
  ASSERT_EQ(r.tokens.sizes(), want.sizes()) << r.tokens;
  EXPECT_TRUE(at::equal(r.tokens, want)) << r.tokens << "\nexpected\n" << want;
  if (run.contains("transition"))
    expect_transition(transition_scores(r.scores, r.tokens), run.at("transition"));
}

INSTANTIATE_TEST_SUITE_P(Fixture, DecoderProcessors,
                         ::testing::Values("eos_only", "greedy_scores", "no_repeat_ngram_2", "min_new_tokens",
                                           "min_length", "min_new_tokens_3", "min_length_8", "bad_words",
                                           "suppress", "begin_suppress", "encoder_repetition_penalty",
                                           "ngram_penalty", "sample_seed5", "sample_seed123"));

// generation_config.json alone governs T5 decoding: num_beams 4, length_penalty, no_repeat_ngram_size,
// early_stopping, max_length 12 (transformers' model.generate(ids, mask) with no arguments).
TEST(T5GenerationConfig, FileGovernsLikeTransformers) {
  const std::string dir = model_dir("t5_v1_1_genconfig");
  const models::T5Model model = models::load_t5(dir);
  const GenerationConfig g = GenerationConfig::load(dir);
  EXPECT_EQ(g.num_beams, 4);
  EXPECT_EQ(g.max_length, 12);
  const SafetensorsFile dump = SafetensorsFile::open(model_dir("t5_v1_1") + "/hf_outputs.safetensors");
  const Json hf = read_json_file(dir + "/hf_outputs.json");
  const Seq2SeqGeneration out =
      seq2seq_generate(model, dump.tensor("enc.input_ids"), dump.tensor("enc.attention_mask"), g);
  EXPECT_TRUE(at::equal(out.sequences, ids_of(hf.at("sequences")))) << out.sequences;
  std::vector<int64_t> single;
  for (const Json& v : hf.at("single_input_ids")) single.push_back(v.get<int64_t>());
  const at::Tensor one = at::tensor(single, at::TensorOptions().dtype(at::kLong)).view({1, -1});
  EXPECT_TRUE(at::equal(seq2seq_generate(model, one, {}, g).sequences, ids_of(hf.at("single"))));
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(GenerationConfigKeys, ProcessorsQloraLacksAreRefusedNamingTheKey) {
  const std::string msg = error_of([] { config_of(Json{{"forced_bos_token_id", 3}}); });
  EXPECT_NE(msg.find("forced_bos_token_id"), std::string::npos) << msg;
  EXPECT_NE(error_of([] { config_of(Json{{"typical_p", 0.5}}); }).find("typical_p"), std::string::npos);
  // transformers' default values decode the same, so they pass; so do keys that change no token.
  EXPECT_EQ(error_of([] { config_of(Json{{"typical_p", 1.0}, {"forced_eos_token_id", nullptr}}); }), "");
  EXPECT_EQ(error_of([] { config_of(Json{{"num_return_sequences", 2}, {"use_cache", true}}); }), "");
  const GenerationConfig g = config_of(Json{{"bad_words_ids", {{4}, {5, 6}}},
                                            {"suppress_tokens", {7}},
                                            {"begin_suppress_tokens", 8},
                                            {"min_new_tokens", 3}});
  EXPECT_EQ(g.bad_words_ids, (std::vector<std::vector<int64_t>>{{4}, {5, 6}}));
  EXPECT_EQ(g.suppress_tokens, std::vector<int64_t>{7});
  EXPECT_EQ(g.begin_suppress_tokens, std::vector<int64_t>{8});
  EXPECT_EQ(g.min_new_tokens, 3);
  EXPECT_NE(error_of([] {
              config_of(Json{{"bad_words_ids", {1, 2}}});
            }).find("bad_words_ids"),
            std::string::npos);
}

TEST(Seq2SeqGenerate, RefusesWhatItCannotMatch) {
  static const models::T5Model model = models::load_t5(model_dir("t5_v1_1"));
  const at::Tensor ids = at::tensor({5, 6, 1}, at::TensorOptions().dtype(at::kLong)).view({1, 3});
  GenerationConfig g;
  g.num_beams = 2;
  g.do_sample = true;
  EXPECT_NE(error_of([&] { seq2seq_generate(model, ids, {}, g); }).find("do_sample"), std::string::npos);
  g.do_sample = false;
  g.encoder_repetition_penalty = 1.5;
  EXPECT_NE(error_of([&] { seq2seq_generate(model, ids, {}, g); }).find("encoder_repetition_penalty"),
            std::string::npos);
}

TEST(LogitsProcessors, BadWordsNeedTheirPrefixAndSkipEos) {
  const at::Tensor scores = at::zeros({2, 6});
  const at::Tensor ids = at::tensor({3, 4, 2, 4}, at::TensorOptions().dtype(at::kLong)).view({2, 2});
  const at::Tensor out = ban_bad_words(scores, ids, {{1}, {4, 5}, {0}}, {0});
  EXPECT_TRUE(std::isinf(out[0][1].item<float>()) && std::isinf(out[1][1].item<float>()));
  EXPECT_TRUE(std::isinf(out[0][5].item<float>()) && std::isinf(out[1][5].item<float>()));  // both end in 4
  EXPECT_EQ(out[0][0].item<float>(), 0.0f);  // [eos] is never a bad word
  EXPECT_EQ(out.isinf().sum().item<int64_t>(), 4);
}

}  // namespace
}  // namespace qlora::infer
