// Generation against transformers 5.17: greedy ids of the tiny decoders (tools/gen_llama_fixtures.py),
// the logits processors on fixed scores, and the real aidreams260K model against its reference ids.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "qlora/core/fs.h"
#include "qlora/core/jsonl.h"
#include "qlora/infer/generate.h"
#include "qlora/io/safetensors.h"
#include "qlora/models/causal_lm.h"
#include "qlora/tokenizer/tokenizer.h"

namespace qlora::infer {
namespace {

std::string model_dir(const std::string& name) { return std::string(QLORA_FIXTURES_DIR) + "/models/" + name; }

SafetensorsFile dump_of(const std::string& name) {
  return SafetensorsFile::open(model_dir(name) + "/hf_outputs.safetensors");
}

std::vector<int64_t> to_vector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kLong).contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

// The unpadded prompt of row b.
std::vector<int64_t> prompt_of(const at::Tensor& ids, const at::Tensor& mask, int64_t b) {
  return to_vector(ids[b].index({mask[b].to(at::kBool)}));
}

GenerateOptions greedy(int64_t n) {
  GenerateOptions o;
  o.max_new_tokens = n;
  o.pad_token_id = 0;  // as the fixture's generate call; eos disabled there too
  return o;
}

const char* const kModels[] = {"llama_llama3", "llama_linear", "llama_dynamic", "mistral_sw", "qwen2_tied"};

class GreedyParity : public ::testing::TestWithParam<const char*> {};

// Ids must be identical: any logits error large enough to matter flips an argmax over 32 steps.
TEST_P(GreedyParity, LeftPaddedBatchMatchesTransformersGenerate) {
  const std::string name = GetParam();
  auto model = models::load_causal_lm(model_dir(name));
  const auto dump = dump_of(name);
  const at::Tensor ids = dump.tensor("greedy.prompt_ids"), mask = dump.tensor("greedy.prompt_mask");
  const GenerateResult r = generate(*model, ids, mask, greedy(32));
  EXPECT_TRUE(at::equal(r.tokens, dump.tensor("greedy.ids")))
      << name << "\nours " << r.tokens << "\nhf " << dump.tensor("greedy.ids");
  EXPECT_EQ(r.rows[0].finish_reason, "length");
}

TEST_P(GreedyParity, BatchedEqualsEachRowAlone) {
  const std::string name = GetParam();
  auto model = models::load_causal_lm(model_dir(name));
  const auto dump = dump_of(name);
  const at::Tensor ids = dump.tensor("greedy.prompt_ids"), mask = dump.tensor("greedy.prompt_mask");
  const std::vector<std::vector<int64_t>> prompts = {prompt_of(ids, mask, 0), prompt_of(ids, mask, 1)};
  const GenerateResult batched = generate(*model, prompts, greedy(32));
  for (int64_t b = 0; b < 2; ++b) {
    const GenerateResult alone = generate(*model, {prompts[static_cast<size_t>(b)]}, greedy(32));
    EXPECT_EQ(batched.rows[static_cast<size_t>(b)].ids, alone.rows[0].ids) << name << " row " << b;
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GreedyParity, ::testing::ValuesIn(kModels));

TEST(Generate, EosEndsOneRowWhichThenEmitsPad) {
  auto model = models::load_causal_lm(model_dir("llama_llama3"));
  const auto dump = dump_of("llama_llama3");
  const std::vector<int64_t> hf0 = to_vector(dump.tensor("greedy.ids")[0]);
  const std::vector<int64_t> hf1 = to_vector(dump.tensor("greedy.ids")[1]);
  GenerateOptions o = greedy(32);
  o.pad_token_id = 95;
  o.eos_token_ids = {hf0[5]};
  int64_t streamed = 0;
  GenerateCallbacks cb;
  cb.on_token = [&](int64_t, int64_t) { ++streamed; };
  // Same prompts re-padded with pad 95: positions and masks make the pad value irrelevant.
  const at::Tensor ids = dump.tensor("greedy.prompt_ids"), mask = dump.tensor("greedy.prompt_mask");
  const GenerateResult r = generate(*model, {prompt_of(ids, mask, 0), prompt_of(ids, mask, 1)}, o, cb);
  const size_t stop0 = static_cast<size_t>(std::find(hf0.begin(), hf0.end(), hf0[5]) - hf0.begin());
  EXPECT_EQ(r.rows[0].ids, std::vector<int64_t>(hf0.begin(), hf0.begin() + stop0 + 1));
  EXPECT_EQ(r.rows[0].finish_reason, "eos");
  const auto eos_in_row1 = std::find(hf1.begin(), hf1.end(), hf0[5]);
  const std::vector<int64_t> want1(hf1.begin(), eos_in_row1 == hf1.end() ? hf1.end() : eos_in_row1 + 1);
  EXPECT_EQ(r.rows[1].ids, want1);
  for (int64_t t = static_cast<int64_t>(stop0) + 1; t < r.steps; ++t)
    EXPECT_EQ(r.tokens[0][t].item<int64_t>(), 95);
  EXPECT_EQ(streamed, static_cast<int64_t>(r.rows[0].ids.size() + r.rows[1].ids.size()));
}

TEST(Generate, StopStringEndsRowAndIsTrimmed) {
  auto model = models::load_causal_lm(model_dir("qwen2_tied"));
  const auto dump = dump_of("qwen2_tied");
  const std::vector<int64_t> hf = to_vector(dump.tensor("greedy.ids")[0]);
  GenerateCallbacks cb;
  cb.decode = [](const std::vector<int64_t>& ids) {
    std::string s;
    for (int64_t id : ids) s += "[" + std::to_string(id) + "]";
    return s;
  };
  GenerateOptions o = greedy(32);
  const std::string stop = "[" + std::to_string(hf[6]) + "][" + std::to_string(hf[7]) + "]";
  o.stop_strings = {"never-there", stop};
  const at::Tensor ids = dump.tensor("greedy.prompt_ids"), mask = dump.tensor("greedy.prompt_mask");
  const GenerateResult r = generate(*model, {prompt_of(ids, mask, 0)}, o, cb);
  // Expected from the transformers ids: the first prefix whose text contains the stop string.
  std::vector<int64_t> want;
  for (int64_t id : hf) {
    want.push_back(id);
    if (cb.decode(want).find(stop) != std::string::npos) break;
  }
  const std::string full = cb.decode(want);
  EXPECT_EQ(r.rows[0].ids, want);
  EXPECT_EQ(r.rows[0].finish_reason, "stop");
  EXPECT_EQ(r.rows[0].text, full.substr(0, full.find(stop)));
}

TEST(Generate, SeededSamplingIsReproducible) {
  auto model = models::load_causal_lm(model_dir("llama_linear"));
  GenerateOptions o = greedy(24);
  o.do_sample = true;
  o.temperature = 1.5;
  o.top_k = 0;
  o.seed = 1234;
  const GenerateResult a = generate(*model, {{1, 5, 9}}, o);
  const GenerateResult b = generate(*model, {{1, 5, 9}}, o);
  EXPECT_EQ(a.rows[0].ids, b.rows[0].ids);
  o.seed = 99;
  const GenerateResult c = generate(*model, {{1, 5, 9}}, o);
  EXPECT_NE(a.rows[0].ids, c.rows[0].ids);
  // top_k 1 leaves only the argmax: sampling then equals greedy search.
  o.top_k = 1;
  EXPECT_EQ(generate(*model, {{1, 5, 9}}, o).rows[0].ids,
            generate(*model, {{1, 5, 9}}, greedy(24)).rows[0].ids);
}

// Processed scores must equal transformers' exactly, -inf placement included (same fp32 ops).
TEST(LogitsProcessors, MatchTransformers) {
  const auto d = SafetensorsFile::open(std::string(QLORA_FIXTURES_DIR) + "/infer/processors.safetensors");
  const at::Tensor scores = d.tensor("scores"), ids = d.tensor("input_ids");
  auto check = [&](const std::string& key, const at::Tensor& ours) {
    const at::Tensor want = d.tensor(key);
    EXPECT_TRUE(at::equal(ours.isinf(), want.isinf())) << key;
    const at::Tensor finite = want.isfinite();
    const double diff = (ours.index({finite}) - want.index({finite})).abs().max().item<double>();
    std::printf("[ parity   ] %-24s max|diff| = %.3g, kept %lld\n", key.c_str(), diff,
                static_cast<long long>(finite.sum().item<int64_t>()));
    EXPECT_EQ(diff, 0.0) << key;
  };
  check("repetition_penalty_1.3", repetition_penalty(scores, ids, 1.3));
  check("repetition_penalty_0.8", repetition_penalty(scores, ids, 0.8));
  check("temperature_0.7", temperature_warp(scores, 0.7));
  check("top_k_5", top_k_filter(scores, 5));
  check("top_k_1", top_k_filter(scores, 1));
  check("top_p_0.8", top_p_filter(scores, 0.8));
  check("top_p_0.3", top_p_filter(scores, 0.3));
  const Json meta = read_json_file(std::string(QLORA_FIXTURES_DIR) + "/infer/processors.json")["chain"];
  GenerateOptions o;
  o.do_sample = true;
  o.repetition_penalty = meta["repetition_penalty"].get<double>();
  o.temperature = meta["temperature"].get<double>();
  o.top_k = meta["top_k"].get<int64_t>();
  o.top_p = meta["top_p"].get<double>();
  check("chain", process_logits(scores, ids, o));
}

// The real aidreams260K (llama2.c stories-style LLaMA): 100 greedy tokens from BOS.
TEST(Aidreams, GreedyFromBosReproducesReference) {
  const std::string dir = std::string(QLORA_SOURCE_DIR) + "/../shared/data/models/aidreams260K";
  if (!fsys::exists(dir + "/expected_greedy_100.json")) GTEST_SKIP() << dir << " not present";
  const Json expected = read_json_file(dir + "/expected_greedy_100.json");
  auto model = models::load_causal_lm(dir);
  GenerateOptions o = generate_options_from(GenerationConfig::load(dir), 1);
  o.max_new_tokens = 100;
  const auto tokenizer = load_tokenizer(dir);
  GenerateCallbacks cb;
  cb.decode = [&](const std::vector<int64_t>& ids) { return tokenizer->decode(ids, true); };
  const std::vector<int64_t> prompt = expected["prompt_ids"].get<std::vector<int64_t>>();
  EXPECT_EQ(tokenizer->encode("").ids, prompt);  // LLaMA adds BOS to the empty prompt
  const GenerateResult r = generate(*model, {prompt}, o, cb);
  EXPECT_EQ(r.rows[0].ids, expected["greedy_next_ids"].get<std::vector<int64_t>>());
  EXPECT_EQ(r.rows[0].text, expected["decoded"].get<std::string>());
}

}  // namespace
}  // namespace qlora::infer
