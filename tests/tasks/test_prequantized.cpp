// Pre-quantized bitsandbytes checkpoints (tools/gen_prequant_fixtures.py: tests/fixtures/models/llama_llama3
// loaded by transformers 5.17 + bitsandbytes 0.50.2 with NF4+DQ, FP4 and LLM.int8, then save_pretrained):
// loading them gives transformers' logits, and `qlora export --quantize` of the dense model writes the
// same tensors, bit for bit, and the same quantization_config.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <ostream>

#include "error_of.h"
#include "parity.h"
#include "qlora/core/atomic_file.h"
#include "qlora/core/fs.h"
#include "qlora/core/jsonl.h"
#include "qlora/io/checkpoint.h"
#include "qlora/io/safetensors.h"
#include "qlora/models/causal_lm.h"
#include "qlora/models/encoder.h"
#include "qlora/models/quantize.h"
#include "qlora/models/t5.h"
#include "qlora/tasks/export.h"

namespace qlora::tasks {
namespace {

const std::string kFixtures = QLORA_FIXTURES_DIR;
const std::string kDense = kFixtures + "/models/llama_llama3";

std::string folder(const std::string& kind) { return kDense + "-bnb-" + kind; }

std::string temp_dir(const std::string& name) {
  return "/tmp/qlora_test_prequant_" + std::to_string(::getpid()) + "_" + name;
}

at::Tensor logits_of(models::CausalLM& model, const at::Tensor& ids) {
  models::CausalLmInputs in;
  in.input_ids = ids;
  at::NoGradGuard no_grad;
  return model.forward(in, nullptr, {}).logits;
}

int64_t count_quantized(models::CausalLM& model, bool four_bit) {
  int64_t n = 0;
  for (const auto& [name, linear] : model.named_linears())
    n += four_bit ? (linear->base.q4 != nullptr) : (linear->base.q8 != nullptr);
  return n;
}

struct Case {
  const char* kind;
  bool four_bit;
  double tolerance;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.kind; }

// 4-bit: the dequantized weights are bit-identical and the matmuls are float32; int8: both run LLM.int8's
// exact int32 product of the same int8 codes with the same float32 dequantization. What remains is float32
// summation order in attention and the norms (transformers' eager LLaMA vs ours, measured 0 to 2e-6).
class PrequantizedLoad : public ::testing::TestWithParam<Case> {};

TEST_P(PrequantizedLoad, LogitsMatchTransformers) {
  const Case c = GetParam();
  const auto hf = SafetensorsFile::open(folder(c.kind) + "/hf_outputs.safetensors");
  auto model = models::load_causal_lm(folder(c.kind));
  EXPECT_EQ(count_quantized(*model, c.four_bit), 14);  // 7 projections x 2 layers; lm_head stays dense
  const at::Tensor logits = logits_of(*model, hf.tensor("input_ids"));
  qlora::testing::expect_close(std::string(c.kind) + " logits", logits, hf.tensor("logits"), c.tolerance);
}

INSTANTIATE_TEST_SUITE_P(Bnb, PrequantizedLoad,
                         ::testing::Values(Case{"nf4", true, 1e-5}, Case{"fp4", true, 1e-5},
                                           Case{"int8", false, 1e-5}),
                         [](const auto& info) { return std::string(info.param.kind); });

TEST(PrequantizedLoad, StatesEqualQuantizeOnLoad) {
  auto pre = models::load_causal_lm(folder("nf4"));
  auto dense = models::load_causal_lm(kDense);
  models::QuantizeOptions q;
  q.load_in_4bit = true;
  q.output_module = "lm_head";
  models::quantize_linears(dense->named_linears(), q);
  const auto a = pre->named_linears();
  const auto b = dense->named_linears();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE(a[i].first);
    ASSERT_EQ(a[i].second->base.q4 != nullptr, b[i].second->base.q4 != nullptr);
    if (!a[i].second->base.q4) continue;
    const auto& x = *a[i].second->base.q4;
    const auto& y = *b[i].second->base.q4;
    EXPECT_TRUE(at::equal(x.packed, y.packed));
    EXPECT_TRUE(at::equal(x.absmax, y.absmax));
    EXPECT_TRUE(at::equal(x.nested_absmax, y.nested_absmax));
    EXPECT_TRUE(at::equal(x.offset, y.offset));
    EXPECT_EQ(x.shape, y.shape);
  }
}

struct ExportCase {
  const char* kind;  // fixture folder
  const char* quantize;
  bool double_quant;
};
void PrintTo(const ExportCase& c, std::ostream* os) { *os << c.kind; }

class ExportQuantized : public ::testing::TestWithParam<ExportCase> {};

TEST_P(ExportQuantized, WritesWhatTransformersSaves) {
  const ExportCase c = GetParam();
  const std::string out = temp_dir(std::string("export_") + c.kind);
  fsys::remove_all(out);
  ExportOptions o;
  o.model_dir = kDense;
  o.out_dir = out;
  o.quantize = c.quantize;
  o.double_quant = c.double_quant;
  const Json result = export_merged(o);
  EXPECT_EQ(result["quantized_modules"].get<int64_t>(), 14);

  const Checkpoint ours = open_checkpoint(out);
  const Checkpoint theirs = open_checkpoint(folder(c.kind));
  EXPECT_EQ(ours.names(), theirs.names());
  for (const std::string& name : theirs.names()) {
    if (!ours.contains(name)) continue;
    SCOPED_TRACE(name);
    const at::Tensor x = ours.tensor(name);
    const at::Tensor y = theirs.tensor(name);
    ASSERT_EQ(x.scalar_type(), y.scalar_type());
    ASSERT_EQ(x.sizes(), y.sizes());
    EXPECT_TRUE(at::equal(x, y));  // bitwise: packed codes, absmax codes, quant_state JSON bytes, SCB
  }
  const Json a = Json::parse(read_file(out + "/config.json"));
  const Json b = Json::parse(read_file(folder(c.kind) + "/config.json"));
  EXPECT_EQ(a.at("quantization_config"), b.at("quantization_config"));

  // And it loads back to the same model as transformers' file.
  const auto hf = SafetensorsFile::open(folder(c.kind) + "/hf_outputs.safetensors");
  auto back = models::load_causal_lm(out);
  auto ref = models::load_causal_lm(folder(c.kind));
  EXPECT_TRUE(at::equal(logits_of(*back, hf.tensor("input_ids")), logits_of(*ref, hf.tensor("input_ids"))));
  fsys::remove_all(out);
}

INSTANTIATE_TEST_SUITE_P(Bnb, ExportQuantized,
                         ::testing::Values(ExportCase{"nf4", "nf4", true}, ExportCase{"fp4", "fp4", false},
                                           ExportCase{"int8", "int8", false}),
                         [](const auto& info) { return std::string(info.param.kind); });

TEST(ExportQuantized, DenseExportOfAQuantizedBaseDequantizes) {
  const std::string out = temp_dir("dense");
  fsys::remove_all(out);
  ExportOptions o;
  o.model_dir = folder("nf4");
  o.out_dir = out;
  export_merged(o);
  const Json config = Json::parse(read_file(out + "/config.json"));
  EXPECT_FALSE(config.contains("quantization_config"));
  EXPECT_EQ(config.at("torch_dtype"), "float32");  // bnb's float32 statistics do not decide the dtype
  auto pre = models::load_causal_lm(folder("nf4"));
  const Checkpoint ckpt = open_checkpoint(out);
  EXPECT_FALSE(ckpt.contains("model.layers.0.mlp.up_proj.weight.absmax"));
  for (const auto& [name, linear] : pre->named_linears()) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(at::equal(ckpt.tensor(name + ".weight"), linear->base.dense_weight(at::kFloat)));
  }
  fsys::remove_all(out);
}

// The other loaders (T5, XLM-R QA) on NF4 + double quant: same logits as transformers (fp32, summation order
// only), and export --quantize writes transformers' file, which for T5 means leaving the "wo" projections
// dense as transformers does (_keep_in_fp32_modules).
TEST(PrequantizedLoad, T5LogitsMatchTransformers) {
  const std::string dir = kFixtures + "/models/t5_v1_1-bnb-nf4";
  const auto hf = SafetensorsFile::open(dir + "/hf_outputs.safetensors");
  models::T5Model model = models::load_t5(dir);
  int64_t four_bit = 0;
  for (const auto& [name, linear] : model.named_linears()) {
    const bool wo = name.size() > 3 && name.compare(name.size() - 3, 3, ".wo") == 0;
    EXPECT_EQ(linear->base.q4 != nullptr, !wo && name != "lm_head") << name;
    four_bit += linear->base.q4 != nullptr;
  }
  EXPECT_EQ(four_bit, 32);
  models::Seq2SeqInputs in;
  in.input_ids = hf.tensor("input_ids");
  in.decoder_input_ids = hf.tensor("decoder_input_ids");
  at::NoGradGuard no_grad;
  const at::Tensor logits = models::seq2seq_forward(model, in, {}).logits;
  qlora::testing::expect_close("logits", logits, hf.tensor("logits"), 1e-5);
}

TEST(PrequantizedLoad, XlmrQaLogitsMatchTransformers) {
  const std::string dir = kFixtures + "/models/tiny-xlmr-qa-bnb-nf4";
  const auto hf = SafetensorsFile::open(dir + "/hf_outputs.safetensors");
  models::EncoderLoadOptions options;
  options.head = models::EncoderHead::kQuestionAnswering;
  models::EncoderModel model = models::load_encoder(dir, options);
  int64_t four_bit = 0;
  for (const auto& [name, linear] : model.named_linears()) four_bit += linear->base.q4 != nullptr;
  EXPECT_EQ(four_bit, 13);  // every linear, qa_outputs included (transformers quantizes it too)
  at::NoGradGuard no_grad;
  const auto out = models::qa_forward(model, {hf.tensor("input_ids"), {}, {}}, {});
  qlora::testing::expect_close("start logits", out.start, hf.tensor("start_logits"), 1e-5);
  qlora::testing::expect_close("end logits", out.end, hf.tensor("end_logits"), 1e-5);
}

TEST(ExportQuantized, T5AndXlmrWriteWhatTransformersSaves) {
  for (const std::string base : {"t5_v1_1", "tiny-xlmr-qa"}) {
    SCOPED_TRACE(base);
    const std::string out = temp_dir("export_" + base);
    fsys::remove_all(out);
    ExportOptions o;
    o.model_dir = kFixtures + "/models/" + base;
    o.out_dir = out;
    o.quantize = "nf4";
    export_merged(o);
    const Checkpoint ours = open_checkpoint(out);
    const Checkpoint theirs = open_checkpoint(kFixtures + "/models/" + base + "-bnb-nf4");
    EXPECT_EQ(ours.names(), theirs.names());
    for (const std::string& name : theirs.names()) {
      if (!ours.contains(name)) continue;
      const at::Tensor x = ours.tensor(name), y = theirs.tensor(name);
      EXPECT_TRUE(x.scalar_type() == y.scalar_type() && x.sizes() == y.sizes() && at::equal(x, y)) << name;
    }
    fsys::remove_all(out);
  }
}

TEST(PrequantizedLoad, CastingTheModelLeavesQuantizedWeightsAlone) {
  auto model = models::load_causal_lm(folder("nf4"));
  model->to(at::kBFloat16);  // used to throw on the undefined dense weight of a quantized linear
  EXPECT_EQ(model->dtype(), at::kBFloat16);
  EXPECT_EQ(count_quantized(*model, true), 14);
  models::T5Model t5 = models::load_t5(kFixtures + "/models/t5_v1_1-bnb-nf4");
  t5.to(at::kBFloat16);
  EXPECT_EQ(t5.shared.scalar_type(), at::kBFloat16);
  models::EncoderLoadOptions options;
  options.head = models::EncoderHead::kQuestionAnswering;
  models::EncoderModel xlmr = models::load_encoder(kFixtures + "/models/tiny-xlmr-qa-bnb-nf4", options);
  xlmr.to(at::kBFloat16);
  EXPECT_EQ(xlmr.word_embeddings.scalar_type(), at::kBFloat16);
}

TEST(PrequantizedLoad, Int8ThresholdComesFromTheConfig) {
  const std::string dir = temp_dir("int8_threshold");
  fsys::remove_all(dir);
  fsys::create_directories(dir);
  Json config = Json::parse(read_file(folder("int8") + "/config.json"));
  config["quantization_config"]["llm_int8_threshold"] = 3.5;
  write_file_atomic(dir + "/config.json", config.dump(2));
  write_file_atomic(dir + "/model.safetensors", read_file(folder("int8") + "/model.safetensors"));
  auto model = models::load_causal_lm(dir);
  int64_t n = 0;
  for (const auto& [name, linear] : model->named_linears()) {
    if (!linear->base.q8) continue;
    EXPECT_EQ(linear->base.int8_threshold, 3.5) << name;
    ++n;
  }
  EXPECT_EQ(n, 14);
  fsys::remove_all(dir);
}

TEST(PrequantizedLoad, MissingStatisticIsNamed) {
  const std::string dir = temp_dir("broken");
  fsys::remove_all(dir);
  fsys::create_directories(dir);
  write_file_atomic(dir + "/config.json", read_file(folder("nf4") + "/config.json"));
  const Checkpoint src = open_checkpoint(folder("nf4"));
  NamedTensors tensors;
  const std::string dropped = "model.layers.1.self_attn.k_proj.weight.absmax";
  for (const std::string& name : src.names())
    if (name != dropped) tensors.emplace_back(name, src.tensor(name));
  save_checkpoint(dir, tensors);
  const std::string err = qlora_test::error_of([&] { models::load_causal_lm(dir); });
  EXPECT_NE(err.find(dir), std::string::npos) << err;
  EXPECT_NE(err.find("model.layers.1.self_attn.k_proj.weight"), std::string::npos) << err;
  EXPECT_NE(err.find("absmax"), std::string::npos) << err;
  fsys::remove_all(dir);
}

}  // namespace
}  // namespace qlora::tasks
