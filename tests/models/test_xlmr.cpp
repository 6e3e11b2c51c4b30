// XLM-R / BERT encoders against transformers 5.17 dumps (tools/gen_xlmr_fixtures.py), loading
// rules, the table of names and config errors.
//
// Tolerances: hidden states and logits 1e-5 absolute in float32. Values are O(1) (post-LayerNorm).
// Against the pinned venv the difference measures 0: we run the same ops in the same order on the
// same libtorch build. We do not assert bit equality because another BLAS, thread count or device
// changes float32 accumulation order: each op then differs by a few ulps (~1e-7), two layers
// compound that to ~1e-6, and 1e-5 leaves headroom while any real bug (a missing bias, a wrong eps,
// wrong position ids, a mask off by one) shows up at 1e-2 or more. Losses average log-softmaxes of
// those logits: 1e-6.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "models/encoder_test_util.h"
#include "qlora/core/error.h"
#include "qlora/core/jsonl.h"
#include "qlora/io/checkpoint.h"
#include "qlora/io/hf_config.h"
#include "qlora/models/encoder.h"

namespace qlora::models {
namespace {

using testing::expect_close;
using testing::expect_close_unpadded;
using testing::hf_outputs;
using testing::inputs_of;
using testing::model_dir;

constexpr double kTol = 1e-5;
constexpr double kLossTol = 1e-6;
const char* const kBatches[] = {"padded", "full"};

EncoderModel load(const std::string& name, EncoderHead head, EncoderLoadReport* report = nullptr) {
  return load_encoder(model_dir(name), {head}, report);
}

void check_qa_parity(const std::string& name, bool with_types) {
  const EncoderModel model = load(name, EncoderHead::kQuestionAnswering);
  const SafetensorsFile dump = hf_outputs(name);
  for (const std::string batch : kBatches) {
    const EncoderInputs in = inputs_of(dump, batch, with_types);
    const std::string what = name + " " + batch;
    expect_close_unpadded(what + " hidden", encode(model, in, {}), dump.tensor(batch + ".hidden"),
                          in.attention_mask, kTol);
    const QaLogits logits = qa_forward(model, in, {});
    expect_close(what + " start_logits", logits.start, dump.tensor(batch + ".start_logits"), kTol);
    expect_close(what + " end_logits", logits.end, dump.tensor(batch + ".end_logits"), kTol);
    const at::Tensor loss = qa_loss(logits.start, logits.end, dump.tensor(batch + ".start_positions"),
                                    dump.tensor(batch + ".end_positions"));
    expect_close(what + " qa loss", loss.reshape({1}), dump.tensor(batch + ".loss"), kLossTol);
  }
}

void check_cls_parity(const std::string& name, bool with_types) {
  const EncoderModel model = load(name, EncoderHead::kSequenceClassification);
  EXPECT_EQ(model.config.num_labels, 3);
  const SafetensorsFile dump = hf_outputs(name);
  for (const std::string batch : kBatches) {
    const EncoderInputs in = inputs_of(dump, batch, with_types);
    const std::string what = name + " " + batch;
    const at::Tensor logits = classify(model, in, {});
    expect_close(what + " logits", logits, dump.tensor(batch + ".logits"), kTol);
    const at::Tensor loss = classification_loss(logits, dump.tensor(batch + ".labels"), model.config);
    expect_close(what + " cls loss", loss.reshape({1}), dump.tensor(batch + ".loss"), kLossTol);
  }
}

TEST(XlmrParity, QuestionAnsweringMatchesHf) { check_qa_parity("tiny-xlmr-qa", /*with_types=*/false); }
TEST(XlmrParity, BertQuestionAnsweringWithTokenTypesMatchesHf) { check_qa_parity("tiny-bert-qa", true); }
TEST(XlmrParity, SequenceClassificationMatchesHf) { check_cls_parity("tiny-xlmr-cls", false); }
TEST(XlmrParity, BertSequenceClassificationMatchesHf) { check_cls_parity("tiny-bert-cls", true); }

TEST(XlmrParity, Bf16ForwardIsCloseToFp32) {
  EncoderModel model = load("tiny-xlmr-qa", EncoderHead::kQuestionAnswering);
  const SafetensorsFile dump = hf_outputs("tiny-xlmr-qa");
  model.to(at::kBFloat16);
  EXPECT_EQ(model.dtype(), at::kBFloat16);
  const EncoderInputs in = inputs_of(dump, "padded", false);
  const QaLogits logits = qa_forward(model, in, {});
  EXPECT_EQ(logits.start.scalar_type(), at::kBFloat16);
  // bf16 keeps 8 significant bits (relative step 2^-8 = 0.4%); each of ~10 rounded ops per layer adds
  // that much relative error to O(1)-O(5) values, so logits land within a few 1e-2 of float32.
  expect_close("tiny-xlmr-qa bf16 start_logits", logits.start, dump.tensor("padded.start_logits"), 0.1);
  expect_close("tiny-xlmr-qa bf16 end_logits", logits.end, dump.tensor("padded.end_logits"), 0.1);
  const at::Tensor loss = qa_loss(logits.start, logits.end, dump.tensor("padded.start_positions"),
                                  dump.tensor("padded.end_positions"));
  EXPECT_TRUE(loss.isfinite().item<bool>());
}

TEST(XlmrParity, Fp16ForwardIsCloseToFp32) {
  EncoderModel model = load("tiny-xlmr-qa", EncoderHead::kQuestionAnswering);
  const SafetensorsFile dump = hf_outputs("tiny-xlmr-qa");
  model.to(at::kHalf);
  const QaLogits logits = qa_forward(model, inputs_of(dump, "padded", false), {});
  EXPECT_EQ(logits.start.scalar_type(), at::kHalf);
  // fp16 keeps 11 significant bits: 8x tighter than bf16, same reasoning.
  expect_close("tiny-xlmr-qa fp16 start_logits", logits.start, dump.tensor("padded.start_logits"), 0.02);
  expect_close("tiny-xlmr-qa fp16 end_logits", logits.end, dump.tensor("padded.end_logits"), 0.02);
}

TEST(XlmrForward, DropoutOnlyWhenTraining) {
  const EncoderModel model = load("tiny-xlmr-qa", EncoderHead::kQuestionAnswering);
  const EncoderInputs in = inputs_of(hf_outputs("tiny-xlmr-qa"), "padded", false);
  const at::Tensor eval1 = encode(model, in, {});
  EXPECT_TRUE(at::equal(eval1, encode(model, in, {})));
  auto train = [&](uint64_t seed) {
    return encode(model, in, {true, at::make_generator<at::CPUGeneratorImpl>(seed)});
  };
  const at::Tensor t1 = train(7);
  EXPECT_GT(testing::max_abs_diff(t1, eval1), 1e-2);
  EXPECT_TRUE(at::equal(t1, train(7)));  // seeded: reproducible
}

TEST(XlmrForward, TooLongSequenceIsAnError) {
  const EncoderModel model = load("tiny-xlmr-qa", EncoderHead::kQuestionAnswering);
  // 66 positions minus pad_token_id + 1 = 64 usable.
  EXPECT_NO_THROW(encode(model, {at::full({1, 64}, 5, at::kLong), {}, {}}, {}));
  EXPECT_THROW(encode(model, {at::full({1, 65}, 5, at::kLong), {}, {}}, {}), Error);
}

TEST(XlmrForward, HeadMismatchIsAnError) {
  const EncoderModel model = load("tiny-xlmr-qa", EncoderHead::kQuestionAnswering);
  const EncoderInputs in = inputs_of(hf_outputs("tiny-xlmr-qa"), "full", false);
  EXPECT_THROW(classify(model, in, {}), Error);
}

TEST(XlmrQaLoss, PositionsBeyondSequenceAreIgnored) {
  const at::Tensor start = at::randn({2, 5}), end = at::randn({2, 5});
  // Row 1 has both positions out of range (clamped to 5 = ignore_index): only row 0 counts.
  const at::Tensor both = qa_loss(start, end, at::tensor({1, 9}), at::tensor({3, 100}));
  const at::Tensor row0 = qa_loss(start.slice(0, 0, 1), end.slice(0, 0, 1), at::tensor({1}), at::tensor({3}));
  EXPECT_NEAR(both.item<double>(), row0.item<double>(), 1e-7);
  // Negative positions clamp to 0, as HF's clamp(0, ignored_index) does.
  EXPECT_NEAR(qa_loss(start, end, at::tensor({-4, 0}), at::tensor({0, 0})).item<double>(),
              qa_loss(start, end, at::tensor({0, 0}), at::tensor({0, 0})).item<double>(), 1e-7);
}

TEST(XlmrLoad, BaseModelWithoutPrefixGetsInitialisedQaHead) {
  EncoderLoadReport report;
  const EncoderModel base = load("tiny-xlmr-base", EncoderHead::kQuestionAnswering, &report);
  EXPECT_EQ(report.prefix, "");
  EXPECT_EQ(report.initialized, (std::vector<std::string>{"qa_outputs.weight", "qa_outputs.bias"}));
  EXPECT_EQ(report.unused, (std::vector<std::string>{"pooler.dense.bias", "pooler.dense.weight"}));
  EXPECT_TRUE(at::equal(base.qa_outputs.base.bias, at::zeros({2})));
  // normal(0, initializer_range = 0.02) over 64 values, reproducible from the seed.
  EXPECT_NEAR(base.qa_outputs.base.weight.std().item<double>(), 0.02, 0.006);
  const EncoderModel again = load("tiny-xlmr-base", EncoderHead::kQuestionAnswering);
  EXPECT_TRUE(at::equal(base.qa_outputs.base.weight, again.qa_outputs.base.weight));
  // Same encoder weights as tiny-xlmr-qa, so the same hidden states as HF's QA model.
  const SafetensorsFile dump = hf_outputs("tiny-xlmr-qa");
  const EncoderInputs in = inputs_of(dump, "padded", false);
  expect_close_unpadded("tiny-xlmr-base hidden", encode(base, in, {}), dump.tensor("padded.hidden"),
                        in.attention_mask, kTol);
}

TEST(XlmrLoad, MaskedLmCheckpointIgnoresLmHead) {
  EncoderLoadReport report;
  const EncoderModel mlm = load("tiny-xlmr-mlm", EncoderHead::kQuestionAnswering, &report);
  EXPECT_EQ(report.prefix, "roberta.");
  EXPECT_EQ(report.initialized.size(), 2u);
  ASSERT_FALSE(report.unused.empty());
  for (const std::string& name : report.unused) EXPECT_EQ(name.rfind("lm_head.", 0), 0u) << name;
  const EncoderModel qa = load("tiny-xlmr-qa", EncoderHead::kQuestionAnswering);
  const EncoderInputs in = inputs_of(hf_outputs("tiny-xlmr-qa"), "padded", false);
  EXPECT_TRUE(at::equal(encode(mlm, in, {}), encode(qa, in, {})));
}

TEST(XlmrLoad, HeadModelLoadedBareLeavesHeadUnused) {
  EncoderLoadReport report;
  EncoderModel bare = load("tiny-xlmr-qa", EncoderHead::kNone, &report);
  EXPECT_EQ(report.unused, (std::vector<std::string>{"qa_outputs.bias", "qa_outputs.weight"}));
  EXPECT_FALSE(bare.pooler.base.weight.defined());  // optional, absent from a QA checkpoint
  EXPECT_EQ(bare.hf_module_name("encoder.layer.0.attention.self.query"),
            "encoder.layer.0.attention.self.query");
}

// Copies a fixture checkpoint into a temp folder with one tensor changed (or dropped when `replacement`
// is undefined).
std::string edited_copy(const std::string& name, const std::string& tensor, const at::Tensor& replacement) {
  const std::string dir = ::testing::TempDir() + "/qlora_xlmr_" + std::to_string(::getpid()) + "_" + name;
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(model_dir(name) + "/config.json", dir + "/config.json",
                             std::filesystem::copy_options::overwrite_existing);
  const Checkpoint ckpt = open_checkpoint(model_dir(name));
  NamedTensors tensors;
  for (const std::string& n : ckpt.names()) {
    if (n != tensor)
      tensors.emplace_back(n, ckpt.tensor(n));
    else if (replacement.defined())
      tensors.emplace_back(n, replacement);
  }
  save_checkpoint(dir, tensors);
  return dir;
}

std::string error_of(const std::string& dir) {
  try {
    load_encoder(dir, {EncoderHead::kQuestionAnswering});
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(XlmrLoad, ShapeMismatchNamesTensorAndPath) {
  const std::string name = "roberta.encoder.layer.1.attention.self.query.weight";
  const std::string dir = edited_copy("tiny-xlmr-qa", name, at::zeros({32, 31}));
  const std::string message = error_of(dir);
  EXPECT_NE(message.find(name), std::string::npos) << message;
  EXPECT_NE(message.find(dir), std::string::npos) << message;
  EXPECT_NE(message.find("[32, 31]"), std::string::npos) << message;
}

TEST(XlmrLoad, MissingTensorNamesTensorAndPath) {
  for (const std::string name :
       {"roberta.encoder.layer.1.output.dense.weight", "roberta.embeddings.LayerNorm.bias"}) {
    const std::string dir = edited_copy("tiny-xlmr-qa", name, at::Tensor());
    const std::string message = error_of(dir);
    EXPECT_NE(message.find(name), std::string::npos) << message;
    EXPECT_NE(message.find(dir), std::string::npos) << message;
  }
}

TEST(XlmrTable, NamesFollowHfModulePaths) {
  const EncoderConfig config = EncoderConfig::from_hf_config(HfConfig::load(model_dir("tiny-xlmr-qa")));
  const auto table = encoder_tensor_table(config, EncoderHead::kQuestionAnswering);
  // 5 embedding tensors + 16 per layer + the QA head: the same count as the HF checkpoint.
  ASSERT_EQ(table.size(), 5u + 16u * 2 + 2);
  EXPECT_EQ(table.size(), open_checkpoint(model_dir("tiny-xlmr-qa")).names().size());
  for (const EncoderTensorInfo& t : table) {
    EXPECT_TRUE(open_checkpoint(model_dir("tiny-xlmr-qa")).contains(t.hf_name)) << t.hf_name;
  }
  // XLMRobertaForQuestionAnswering creates qa_outputs before roberta, so PEFT and the Trainer list
  // the head first; the table follows (clip_grad_norm sums norms in this order).
  EXPECT_EQ(table[0].name, "qa_outputs.weight");
  EXPECT_EQ(table[1].name, "qa_outputs.bias");
  EXPECT_TRUE(table[1].init_if_missing);
  EXPECT_EQ(table[2].name, "embeddings.word_embeddings.weight");
  EXPECT_EQ(table[2].hf_name, "roberta.embeddings.word_embeddings.weight");
  EXPECT_EQ(table[2].shape, (std::vector<int64_t>{1000, 32}));
  EXPECT_EQ(table.back().name, "encoder.layer.1.output.LayerNorm.bias");

  EncoderModel model = load("tiny-xlmr-qa", EncoderHead::kQuestionAnswering);
  const auto params = model.named_parameters();
  ASSERT_EQ(params.size(), table.size());
  for (size_t i = 0; i < table.size(); ++i) EXPECT_EQ(params[i].first, table[i].name);
  const auto linears = model.named_linears();
  ASSERT_EQ(linears.size(), 6u * 2 + 1);
  EXPECT_EQ(linears[0].first, "qa_outputs");
  EXPECT_EQ(linears[1].first, "encoder.layer.0.attention.self.query");
  EXPECT_EQ(model.hf_module_name(linears[1].first), "roberta.encoder.layer.0.attention.self.query");
  EXPECT_EQ(model.hf_module_name("qa_outputs"), "qa_outputs");
  EXPECT_EQ(linears[1].second, &model.layers[0].query);
}

TEST(XlmrTable, BertClassificationUsesPoolerAndClassifier) {
  const EncoderConfig config = EncoderConfig::from_hf_config(HfConfig::load(model_dir("tiny-bert-cls")));
  EXPECT_FALSE(config.roberta_positions);
  EXPECT_TRUE(config.pooled_classifier);
  EXPECT_EQ(config.hf_prefix, "bert.");
  EXPECT_EQ(config.layer_norm_eps, 1e-12);
  const Checkpoint ckpt = open_checkpoint(model_dir("tiny-bert-cls"));
  const auto table = encoder_tensor_table(config, EncoderHead::kSequenceClassification);
  EXPECT_EQ(table.size(), ckpt.names().size());
  for (const EncoderTensorInfo& t : table) EXPECT_TRUE(ckpt.contains(t.hf_name)) << t.hf_name;
}

HfConfig config_with(const std::string& key, Json value) {
  Json json = read_json_file(model_dir("tiny-xlmr-qa") + "/config.json");
  json[key] = std::move(value);
  return HfConfig(json, "edited/config.json");
}

std::string config_error(const HfConfig& hf) {
  try {
    EncoderConfig::from_hf_config(hf);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(XlmrConfig, ReadsFields) {
  const EncoderConfig c = EncoderConfig::from_hf_config(HfConfig::load(model_dir("tiny-xlmr-cls")));
  EXPECT_EQ(c.model_type, "xlm-roberta");
  EXPECT_TRUE(c.roberta_positions);
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.head_dim(), 8);
  EXPECT_EQ(c.intermediate_size, 64);
  EXPECT_EQ(c.max_position_embeddings, 66);
  EXPECT_EQ(c.type_vocab_size, 1);
  EXPECT_EQ(c.layer_norm_eps, 1e-5);
  EXPECT_EQ(c.pad_token_id, 1);
  EXPECT_EQ(c.num_labels, 3);            // from id2label
  EXPECT_EQ(c.classifier_dropout, 0.1);  // null -> hidden_dropout_prob
  EXPECT_EQ(c.problem_type, ProblemType::kSingleLabel);
  EXPECT_EQ(c.hidden_act, nn::Activation::kGeluErf);
}

TEST(XlmrConfig, UnsupportedValuesAreErrors) {
  std::string m = config_error(config_with("position_embedding_type", "relative_key"));
  EXPECT_NE(m.find("position_embedding_type"), std::string::npos) << m;
  EXPECT_NE(m.find("edited/config.json"), std::string::npos) << m;
  m = config_error(config_with("hidden_act", "swish"));
  EXPECT_NE(m.find("hidden_act"), std::string::npos) << m;
  m = config_error(config_with("model_type", "t5"));
  EXPECT_NE(m.find("model_type"), std::string::npos) << m;
  m = config_error(config_with("num_attention_heads", 5));
  EXPECT_NE(m.find("num_attention_heads"), std::string::npos) << m;
  EXPECT_EQ(EncoderConfig::from_hf_config(config_with("hidden_act", "gelu_new")).hidden_act,
            nn::Activation::kGeluTanh);
  EXPECT_EQ(EncoderConfig::from_hf_config(config_with("hidden_act", "relu")).hidden_act,
            nn::Activation::kRelu);
}

TEST(XlmrConfig, ProblemTypeFollowsHf) {
  EXPECT_EQ(EncoderConfig::from_hf_config(config_with("num_labels", 1)).problem_type,
            ProblemType::kRegression);
  EXPECT_EQ(
      EncoderConfig::from_hf_config(config_with("problem_type", "multi_label_classification")).problem_type,
      ProblemType::kMultiLabel);
  EXPECT_THROW(EncoderConfig::from_hf_config(config_with("problem_type", "ranking")), Error);
}

}  // namespace
}  // namespace qlora::models
