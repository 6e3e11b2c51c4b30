// attn_implementation sdpa against eager, family by family, on the tiny fixture models: the same weights
// loaded twice, one model per implementation, the same inputs. Eager is the form the transformers parity
// tests check (test_llama.cpp, test_mpt.cpp, test_t5.cpp, test_xlmr.cpp); here sdpa must agree with it on
// right- and left-padded batches, KV-cache decode steps, packed segments and LoRA gradients, and never
// give NaN (a left pad's query row allows no key).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "encoder_test_util.h"
#include "parity.h"
#include "qlora/models/causal_lm.h"
#include "qlora/models/encoder.h"
#include "qlora/models/t5.h"
#include "qlora/nn/attention.h"
#include "qlora/peft/lora_model.h"

namespace qlora::models {
namespace {

using nn::AttnImplementation;
using testing::expect_close;
using testing::model_dir;

// Both sides are fp32 with the same projections; only the attention differs: eager is matmul, softmax,
// matmul, SDPA's fused CPU kernel (or its math backend) sums Q K^T and P V in blocks, with an online
// softmax, in another order. That is ~1e-7 relative per attention, compounded over 2 layers and the
// LM head to a few 1e-7 of the logits' magnitude (measured max: see the [ parity ] lines). 1e-5 relative
// is the bound of the fp32 transformers parity tests, and any mask or scale error (a wrong sliding window,
// a missing ALiBi, T5 scaled by D^-0.5) moves the logits by >= 1e-2.
constexpr double kTol = 1e-5;
// Gradients: the fused kernel's backward recomputes the probabilities from a saved log-sum-exp (eager's
// autograd keeps them) and sums dP, dS in its own blocks. The LoRA here is strong (B ~ N(0, 0.5), scale
// 2, every projection), so scores are sharp, T5's most (unscaled by D^-0.5), and those ~1e-7 differences
// in P grow to at most 4.4e-5 of the gradients' magnitude (t5_v1_0; 2.4e-5 LLaMA, <= 5e-6 MPT and
// XLM-R/BERT, measured on this CPU). 1e-4 leaves a margin for other CPUs' kernels; dropping the mask or
// the ALiBi / position bias from the sdpa path moves the gradients by far more (checked by hand).
constexpr double kGradTol = 1e-4;

const char* const kDecoders[] = {"llama_llama3", "mistral_sw", "qwen2_tied",
                                 "mpt_hf",       "mpt_phogpt", "mpt_variant"};

at::Tensor random_ids(int64_t B, int64_t T, int64_t vocab, uint64_t seed) {
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randint(3, vocab, {B, T}, g, at::TensorOptions().dtype(at::kLong));
}

// [B, T] 0/1 with the given numbers of real tokens per row, padded on the right or on the left.
at::Tensor padding_mask(const std::vector<int64_t>& lengths, int64_t T, bool left) {
  at::Tensor mask =
      at::zeros({static_cast<int64_t>(lengths.size()), T}, at::TensorOptions().dtype(at::kLong));
  for (size_t b = 0; b < lengths.size(); ++b) {
    mask[static_cast<int64_t>(b)].narrow(0, left ? T - lengths[b] : 0, lengths[b]).fill_(1);
  }
  return mask;
}

bool has_nan(const at::Tensor& t) { return at::isnan(t).any().item<bool>(); }

// Rows of `t` [B, T, ...] at the real tokens of `mask` [B, T].
at::Tensor at_tokens(const at::Tensor& t, const at::Tensor& mask) { return t.index({mask.to(at::kBool)}); }

std::unique_ptr<CausalLM> load_decoder(const std::string& name, AttnImplementation impl) {
  CausalLmLoadOptions options;
  options.attn_implementation = impl;
  return load_causal_lm(model_dir(name), options);
}

class DecoderSdpa : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    eager = load_decoder(GetParam(), AttnImplementation::kEager);
    sdpa = load_decoder(GetParam(), AttnImplementation::kSdpa);
    ASSERT_EQ(sdpa->attn_implementation(), AttnImplementation::kSdpa);
  }
  std::unique_ptr<CausalLM> eager, sdpa;
};

TEST_P(DecoderSdpa, PaddedBatchesMatchEager) {
  const std::string name = GetParam();
  const int64_t T = 11;  // > mistral_sw's sliding window of 4
  for (const bool left : {false, true}) {
    CausalLmInputs in;
    in.input_ids = random_ids(3, T, eager->vocab_size(), 1);
    in.attention_mask = padding_mask({T, 7, 2}, T, left);
    const at::Tensor ref = eager->forward(in, nullptr, {}).logits;
    const at::Tensor out = sdpa->forward(in, nullptr, {}).logits;
    const std::string what = name + (left ? " left-padded" : " right-padded");
    expect_close(what, at_tokens(out, in.attention_mask), at_tokens(ref, in.attention_mask), kTol);
    // A left pad's query sees no key; eager's finfo.min mask makes its row uniform, and so does sdpa's.
    EXPECT_FALSE(has_nan(out)) << what;
    expect_close(what + " (pads too)", out, ref, kTol);
  }
}

TEST_P(DecoderSdpa, KvCacheStepsMatchEager) {
  const std::string name = GetParam();
  const int64_t P = 6, steps = 4;
  CausalLmInputs prompt;
  prompt.input_ids = random_ids(2, P, eager->vocab_size(), 2);
  prompt.attention_mask = padding_mask({P, 3}, P, /*left=*/true);
  const at::Tensor next = random_ids(2, steps, eager->vocab_size(), 3);
  KvCache eager_cache, sdpa_cache;
  at::Tensor mask = prompt.attention_mask;
  CausalLmInputs in = prompt;
  for (int64_t s = 0; s <= steps; ++s) {
    const at::Tensor ref = eager->forward(in, &eager_cache, {}).logits;
    const at::Tensor out = sdpa->forward(in, &sdpa_cache, {}).logits;
    const std::string what = name + (s == 0 ? " prefill" : " decode step " + std::to_string(s));
    EXPECT_FALSE(has_nan(out)) << what;
    expect_close(what, out.select(1, -1), ref.select(1, -1), kTol);
    for (size_t l = 0; l < eager_cache.keys.size(); ++l)
      expect_close(what + " cached keys", sdpa_cache.keys[l], eager_cache.keys[l], kTol);
    if (s == steps) break;
    mask = at::cat({mask, at::ones({2, 1}, mask.options())}, 1);
    in = CausalLmInputs{};
    in.input_ids = next.narrow(1, s, 1);
    in.attention_mask = mask;
  }
}

TEST_P(DecoderSdpa, PackedSegmentsMatchEager) {
  const std::string name = GetParam();
  CausalLmInputs in;
  in.input_ids = random_ids(2, 10, eager->vocab_size(), 4);
  in.segment_ids =
      at::tensor({0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1}, at::kLong).view({2, 10});
  expect_close(name + " packed", sdpa->forward(in, nullptr, {}).logits,
               eager->forward(in, nullptr, {}).logits, kTol);
}

// The same LoRA adapter (all-linear, B random) on both models; the loss of a right-padded batch backward.
std::vector<at::Tensor> lora_gradients(CausalLM& model, const CausalLmInputs& in) {
  auto view = peft::peft_view(model);
  peft::LoraConfig config;
  config.r = 2;
  config.lora_alpha = 4;
  config.target_modules = peft::NameSpec::string("all-linear");
  config.task_type = "CAUSAL_LM";
  config.init_lora_weights = "gaussian";
  const peft::LoraSummary summary = peft::attach_lora(view, config, 5);
  at::Generator g = at::make_generator<at::CPUGeneratorImpl>(6);
  for (const auto& t : summary.trainable) {
    if (t.key.find("lora_B") != std::string::npos) t.tensor->detach().normal_(0, 0.5, g);  // B = 0: vacuous
  }
  const at::Tensor logits = model.forward(in, nullptr, {}).logits;  // [B, T, V]
  const at::Tensor labels = in.input_ids.masked_fill(in.attention_mask.eq(0), -100);
  at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), labels.reshape({-1}), {}, at::Reduction::Mean,
                         -100)
      .backward();
  std::vector<at::Tensor> grads;
  for (const auto& t : summary.trainable) grads.push_back(t.tensor->grad().clone());
  return grads;
}

TEST_P(DecoderSdpa, LoraGradientsMatchEager) {
  const std::string name = GetParam();
  CausalLmInputs in;
  in.input_ids = random_ids(3, 9, eager->vocab_size(), 7);
  in.attention_mask = padding_mask({9, 5, 3}, 9, /*left=*/false);
  const std::vector<at::Tensor> ref = lora_gradients(*eager, in);
  const std::vector<at::Tensor> out = lora_gradients(*sdpa, in);
  ASSERT_EQ(out.size(), ref.size());
  ASSERT_FALSE(ref.empty());
  for (size_t i = 0; i < ref.size(); ++i)
    expect_close(name + " lora grad " + std::to_string(i), out[i], ref[i], kGradTol);
}

INSTANTIATE_TEST_SUITE_P(Families, DecoderSdpa, ::testing::ValuesIn(kDecoders));

// T5: relative position bias (unscaled scores), encoder padding, causal decoder, cross attention.
const char* const kT5[] = {"t5_v1_0", "t5_v1_1", "t5_mt5"};

T5Model load_t5_with(const std::string& name, AttnImplementation impl) {
  T5Model m = load_t5(std::string(QLORA_FIXTURES_DIR) + "/models/" + name);
  m.config.attn_implementation = impl;
  return m;
}

class T5Sdpa : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    eager = load_t5_with(GetParam(), AttnImplementation::kEager);
    sdpa = load_t5_with(GetParam(), AttnImplementation::kSdpa);
  }
  T5Model eager, sdpa;
};

TEST_P(T5Sdpa, EncoderDecoderAndCrossAttentionMatchEager) {
  const std::string name = GetParam();
  for (const bool left : {false, true}) {
    Seq2SeqInputs in;
    in.input_ids = random_ids(3, 9, eager.config.vocab_size, 8);
    in.attention_mask = padding_mask({9, 6, 2}, 9, left);
    in.labels = random_ids(3, 5, eager.config.vocab_size, 9);
    const std::string what = name + (left ? " left-padded" : " right-padded");
    const at::Tensor h_ref = encode(eager, in.input_ids, in.attention_mask, {});
    const at::Tensor h_out = encode(sdpa, in.input_ids, in.attention_mask, {});
    EXPECT_FALSE(has_nan(h_out)) << what;
    expect_close(what + " encoder", at_tokens(h_out, in.attention_mask), at_tokens(h_ref, in.attention_mask),
                 kTol);
    const Seq2SeqOutput ref = seq2seq_forward(eager, in, {});
    const Seq2SeqOutput out = seq2seq_forward(sdpa, in, {});
    EXPECT_FALSE(has_nan(out.logits)) << what;
    expect_close(what + " decoder logits", out.logits, ref.logits, kTol);
  }
}

TEST_P(T5Sdpa, DecodeStepsMatchEager) {
  const std::string name = GetParam();
  const at::Tensor ids = random_ids(2, 7, eager.config.vocab_size, 10);
  const at::Tensor mask = padding_mask({7, 4}, 7, /*left=*/false);
  const at::Tensor targets = random_ids(2, 4, eager.config.vocab_size, 11);
  const T5CrossKV cross_ref = precompute_cross_kv(eager, encode(eager, ids, mask, {}), {});
  const T5CrossKV cross_out = precompute_cross_kv(sdpa, encode(sdpa, ids, mask, {}), {});
  T5KVCache cache_ref, cache_out;
  at::Tensor token = at::zeros({2, 1}, at::TensorOptions().dtype(at::kLong));  // decoder_start_token_id
  for (int64_t s = 0; s < 4; ++s) {
    const at::Tensor ref = decode_step(eager, token, cache_ref, cross_ref, mask, {});
    const at::Tensor out = decode_step(sdpa, token, cache_out, cross_out, mask, {});
    expect_close(name + " decode step " + std::to_string(s), out, ref, kTol);
    token = targets.narrow(1, s, 1);
  }
}

TEST_P(T5Sdpa, LoraAndPositionBiasGradientsMatchEager) {
  const std::string name = GetParam();
  Seq2SeqInputs in;
  in.input_ids = random_ids(2, 8, eager.config.vocab_size, 12);
  in.attention_mask = padding_mask({8, 5}, 8, /*left=*/false);
  in.labels = random_ids(2, 4, eager.config.vocab_size, 13);
  auto grads = [&](T5Model& m) {
    auto view = peft::peft_view(m);
    peft::LoraConfig config;
    config.r = 2;
    config.lora_alpha = 4;
    config.target_modules = peft::NameSpec::list({"q", "k", "v", "o"});
    config.init_lora_weights = "gaussian";
    const peft::LoraSummary summary = peft::attach_lora(view, config, 5);
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(6);
    for (const auto& t : summary.trainable) {
      if (t.key.find("lora_B") != std::string::npos) t.tensor->detach().normal_(0, 0.05, g);
    }
    // The relative position bias trains in full fine-tuning: its gradient goes through SDPA's mask.
    m.encoder.relative_attention_bias.requires_grad_(true);
    m.decoder.relative_attention_bias.requires_grad_(true);
    seq2seq_forward(m, in, {}).loss.backward();
    std::vector<at::Tensor> out;
    for (const auto& t : summary.trainable) out.push_back(t.tensor->grad().clone());
    out.push_back(m.encoder.relative_attention_bias.grad().clone());
    out.push_back(m.decoder.relative_attention_bias.grad().clone());
    return out;
  };
  const std::vector<at::Tensor> ref = grads(eager);
  const std::vector<at::Tensor> out = grads(sdpa);
  ASSERT_EQ(out.size(), ref.size());
  ASSERT_GT(ref.size(), 2u);
  for (size_t i = 0; i < ref.size(); ++i)
    expect_close(name + " grad " + std::to_string(i), out[i], ref[i], kGradTol);
}

INSTANTIATE_TEST_SUITE_P(Versions, T5Sdpa, ::testing::ValuesIn(kT5));

// XLM-R / BERT: the padding bias of the encoder, QA logits and LoRA gradients.
const char* const kEncoders[] = {"tiny-xlmr-qa", "tiny-bert-qa"};

EncoderModel load_encoder_with(const std::string& name, AttnImplementation impl) {
  EncoderLoadOptions options;
  options.head = EncoderHead::kQuestionAnswering;
  options.attn_implementation = impl;
  return load_encoder(model_dir(name), options);
}

class EncoderSdpa : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    eager = load_encoder_with(GetParam(), AttnImplementation::kEager);
    sdpa = load_encoder_with(GetParam(), AttnImplementation::kSdpa);
    ASSERT_EQ(sdpa.config.attn_implementation, AttnImplementation::kSdpa);
  }
  EncoderInputs inputs(bool left) const {
    EncoderInputs in;
    in.input_ids = random_ids(3, 10, eager.config.vocab_size, 14);
    in.attention_mask = padding_mask({10, 6, 3}, 10, left);
    return in;
  }
  EncoderModel eager, sdpa;
};

TEST_P(EncoderSdpa, PaddedBatchesMatchEager) {
  const std::string name = GetParam();
  for (const bool left : {false, true}) {
    const EncoderInputs in = inputs(left);
    const std::string what = name + (left ? " left-padded" : " right-padded");
    const at::Tensor out = encode(sdpa, in, {});
    EXPECT_FALSE(has_nan(out)) << what;
    expect_close(what + " hidden", at_tokens(out, in.attention_mask),
                 at_tokens(encode(eager, in, {}), in.attention_mask), kTol);
    const QaLogits l = qa_forward(sdpa, in, {});
    expect_close(what + " start logits", l.start, qa_forward(eager, in, {}).start, kTol);
  }
}

TEST_P(EncoderSdpa, LoraGradientsMatchEager) {
  const std::string name = GetParam();
  const EncoderInputs in = inputs(/*left=*/false);
  auto grads = [&](EncoderModel& m) {
    auto view = peft::peft_view(m);
    peft::LoraConfig config;
    config.r = 2;
    config.lora_alpha = 4;
    config.target_modules = peft::NameSpec::list({"query", "key", "value"});
    config.init_lora_weights = "gaussian";
    const peft::LoraSummary summary = peft::attach_lora(view, config, 5);
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(6);
    for (const auto& t : summary.trainable) {
      if (t.key.find("lora_B") != std::string::npos) t.tensor->detach().normal_(0, 0.5, g);
    }
    const QaLogits l = qa_forward(m, in, {});
    qa_loss(l.start, l.end, at::tensor({1, 2, 0}, at::kLong), at::tensor({3, 4, 1}, at::kLong)).backward();
    std::vector<at::Tensor> out;
    for (const auto& t : summary.trainable) out.push_back(t.tensor->grad().clone());
    return out;
  };
  const std::vector<at::Tensor> ref = grads(eager);
  const std::vector<at::Tensor> out = grads(sdpa);
  ASSERT_EQ(out.size(), ref.size());
  ASSERT_FALSE(ref.empty());
  for (size_t i = 0; i < ref.size(); ++i)
    expect_close(name + " lora grad " + std::to_string(i), out[i], ref[i], kGradTol);
}

// Attention dropout while training: sdpa runs the eager form, so the masks come from ctx.generator and the
// outputs are those of eager bit for bit (XLM-R's fixtures have attention_probs_dropout_prob 0.1).
TEST_P(EncoderSdpa, AttentionDropoutInTrainingRunsEagerWithTheContextGenerator) {
  const EncoderInputs in = inputs(/*left=*/false);
  auto run = [&](const EncoderModel& m) {
    nn::ForwardContext ctx;
    ctx.training = true;
    ctx.generator = at::make_generator<at::CPUGeneratorImpl>(21);
    return encode(m, in, ctx);
  };
  ASSERT_GT(eager.config.attention_dropout, 0.0);
  EXPECT_TRUE(at::equal(run(sdpa), run(eager)));
}

INSTANTIATE_TEST_SUITE_P(Families, EncoderSdpa, ::testing::ValuesIn(kEncoders));

}  // namespace
}  // namespace qlora::models
