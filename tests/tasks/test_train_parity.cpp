// qlora's LoRA training reproduces a PEFT training loop step for step: the same adapter, batches,
// AdamW, warmup + linear schedule and clipping as tools/gen_train_parity.py (PEFT 0.21.2, transformers
// 5.17, torch 2.11), once through a hand-written loop over qa_forward / qa_loss and once through
// train::run_training. Compared: the step-0 gradient of every trainable tensor, each step's loss,
// grad norm and learning rate, and the final adapter.
//
// Tolerances. Both sides run the same libtorch CPU kernels in float32 (eager attention, dropout
// probability 0). The hand loop, which clips in the order Trainer passes model.parameters(), is
// bitwise equal to PEFT on the machine that wrote the fixture (every difference measured 0).
// run_training stacks the per-tensor norms in qlora's trainable order instead (qa_outputs last; in
// transformers 5.17 XLM-R registers it first), which moves the total norm by one float32 ulp at some
// steps; from there losses and norms differ by ~5e-7 and weights by ~5e-8. The limits leave 10-20x
// room over that one-ulp perturbation, for other CPUs' kernel dispatch: 1e-6 absolute on gradients
// (|grad| <= ~1, ulp ~1e-7), 1e-5 on losses (~3.4) and grad norms (~1-2), 1e-6 on trained weights
// (~0.1-1). The learning rate is the same double arithmetic in both (base_lr * factor): bitwise equal.
//
// qa_outputs.bias is the exception: its gradient is 0 in exact arithmetic (the bias adds one constant
// to every position's start (end) logit and softmax cross-entropy is invariant to that), so it receives
// float32 rounding noise (~1e-9), which AdamW normalises into steps of ~lr. Once two runs differ by an
// ulp anywhere, the bias follows another random walk, without changing the loss. Its step-0 gradient
// must be noise-sized, and its final value is only bounded: each run moves it by at most ~1.1 * sum(lr)
// (|m_hat| / sqrt(v_hat) <= sqrt(t * sum_i w_i^2) ~ 1.05 at t = 20), so the two differ by < 3 * sum(lr).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "peft/peft_test_util.h"
#include "qlora/core/fs.h"
#include "qlora/core/jsonl.h"
#include "qlora/data/split.h"
#include "qlora/io/safetensors.h"
#include "qlora/models/encoder.h"
#include "qlora/peft/lora_config.h"
#include "qlora/peft/lora_model.h"
#include "qlora/train/optimizer.h"
#include "qlora/train/schedule.h"
#include "qlora/train/trainer.h"

namespace {

using qlora::Json;
using qlora::SafetensorsFile;
using qlora::models::testing::max_abs_diff;
using qlora::peft::testing::TempDir;
namespace models = qlora::models;
namespace peft = qlora::peft;
namespace train = qlora::train;
namespace fsys = qlora::fsys;

constexpr double kLossTol = 1e-5;
constexpr double kGradNormTol = 1e-5;
constexpr double kGradTol = 1e-6;
constexpr double kWeightTol = 1e-6;
constexpr double kNoiseGradTol = 1e-6;  // |grad| of a tensor whose exact gradient is 0
// The trainable tensor whose exact gradient is 0 (see above): bounded, not compared.
constexpr const char* kNoiseDrivenKey = "qa_outputs.bias";

std::string parity_fixture(const std::string& name) {
  return std::string(QLORA_FIXTURES_DIR) + "/train_parity/" + name;
}

// What tools/gen_train_parity.py recorded.
struct Expected {
  Json info = qlora::read_json_file(parity_fixture("info.json"));
  SafetensorsFile samples = SafetensorsFile::open(parity_fixture("samples.safetensors"));
  SafetensorsFile dump = SafetensorsFile::open(parity_fixture("expected.safetensors"));

  int64_t steps() const { return info.at("steps").get<int64_t>(); }
  int64_t batch() const { return info.at("micro_batch_size").get<int64_t>(); }
  double lr() const { return info.at("learning_rate").get<double>(); }
  double weight_decay() const { return info.at("weight_decay").get<double>(); }
  int64_t warmup() const { return info.at("warmup_steps").get<int64_t>(); }
  double max_grad_norm() const { return info.at("max_grad_norm").get<double>(); }
  std::vector<double> series(const std::string& name) const {
    const at::Tensor t = dump.tensor(name).contiguous();
    return {t.data_ptr<double>(), t.data_ptr<double>() + t.numel()};
  }
  // How far apart two AdamW walks of a zero-gradient parameter can end: 3 * sum(lr).
  double noise_walk_bound() const {
    double sum = 0;
    for (const double lr : series("lr")) sum += lr;
    return 3 * sum;
  }
  // Sample rows of optimizer step k: order[k * batch, (k + 1) * batch).
  std::vector<size_t> rows_of_step(int64_t step) const {
    const at::Tensor order = samples.tensor("order").contiguous();
    const int64_t* o = order.data_ptr<int64_t>();
    return {o + step * batch(), o + (step + 1) * batch()};
  }
};

// The tiny XLM-R QA model with the fixture's initial adapter loaded for training, dropout off.
struct LoraQaModel {
  std::unique_ptr<models::EncoderModel> model;  // heap: the view points into it
  peft::PeftModelView view;
  peft::LoraSummary adapter;

  LoraQaModel() {
    model = std::make_unique<models::EncoderModel>(models::load_encoder(
        qlora::peft::testing::base_model_dir(), {models::EncoderHead::kQuestionAnswering}));
    // The fixture model's config has dropout 0.1; the Python run overrides both to 0.0 so that
    // model.train() is deterministic. lora_dropout is 0.0 in the adapter config.
    model->config.hidden_dropout = 0.0;
    model->config.attention_dropout = 0.0;
    view = peft::peft_view(*model);
    peft::LoadAdapterOptions options;
    options.is_trainable = true;
    adapter = peft::load_adapter(view, parity_fixture("init_adapter"), options);
  }

  // Forward + loss on sample rows (autograd on, training mode).
  at::Tensor loss(const Expected& e, const std::vector<size_t>& rows,
                  const qlora::nn::ForwardContext& ctx) const {
    const at::Tensor idx = at::tensor(std::vector<int64_t>(rows.begin(), rows.end()), at::kLong);
    auto pick = [&](const char* name) { return e.samples.tensor(name).index_select(0, idx); };
    const auto logits = models::qa_forward(*model, {pick("input_ids"), pick("attention_mask"), {}}, ctx);
    return models::qa_loss(logits.start, logits.end, pick("start_positions"), pick("end_positions"));
  }

  // The two groups transformers' Trainer builds: decay by train::decays(), then no decay.
  std::vector<train::ParamGroup> groups(double weight_decay) const {
    train::ParamGroup decay{{}, {}, weight_decay}, plain{{}, {}, 0.0};
    for (const auto& t : adapter.trainable) {
      auto& g = train::decays(t.key) ? decay : plain;
      g.names.push_back(t.key);
      g.params.push_back(*t.tensor);
    }
    return {decay, plain};
  }
};

std::vector<std::string> strings(const Json& j) { return qlora::peft::testing::json_strings(j); }

void expect_series_close(const std::string& what, const std::vector<double>& actual,
                         const std::vector<double>& expected, double tol) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double worst = 0;
  for (size_t k = 0; k < actual.size(); ++k) {
    const double diff = std::abs(actual[k] - expected[k]);
    worst = std::max(worst, diff);
    EXPECT_LE(diff, tol) << what << " at step " << k << ": " << actual[k] << " vs " << expected[k];
  }
  std::printf("[ parity   ] %-48s max|diff| = %.3g (tol %.2g)\n", what.c_str(), worst, tol);
}

// Every trainable tensor against PEFT's final adapter file; the noise-driven bias within its bound.
// `trained`: adapter key -> tensor.
void expect_final_adapter(const std::string& what,
                          const std::vector<std::pair<std::string, at::Tensor>>& trained, const Expected& e) {
  const auto file = SafetensorsFile::open(parity_fixture("final_adapter/adapter_model.safetensors"));
  ASSERT_EQ(file.names().size(), trained.size());
  double worst = 0, noise = 0;
  for (const auto& [key, tensor] : trained) {
    const at::Tensor expected = file.tensor(peft::kPeftKeyPrefix + key);
    ASSERT_EQ(tensor.sizes(), expected.sizes()) << key;
    const double diff = max_abs_diff(tensor, expected);
    if (key == kNoiseDrivenKey) {
      noise = diff;
      EXPECT_LE(diff, e.noise_walk_bound()) << what << ": " << key;
    } else {
      worst = std::max(worst, diff);
      EXPECT_LE(diff, kWeightTol) << what << ": " << key;
    }
  }
  std::printf("[ parity   ] %-48s max|diff| = %.3g (tol %.2g)\n", what.c_str(), worst, kWeightTol);
  std::printf("[ parity   ] %-48s max|diff| = %.3g (bound %.2g)\n",
              ("  " + std::string(kNoiseDrivenKey)).c_str(), noise, e.noise_walk_bound());
}

std::vector<std::pair<std::string, at::Tensor>> trained_tensors(const LoraQaModel& m) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& t : m.adapter.trainable) out.emplace_back(t.key, *t.tensor);
  return out;
}

// The groups agree with transformers' Trainer.get_decay_parameter_names on this adapter. The order
// of the trainable tensors does not: PEFT lists qa_outputs first (XLMRobertaForQuestionAnswering in
// transformers 5.17 assigns self.qa_outputs before self.roberta), qlora last. Only the summation order
// of the clipping norm depends on it (see the top of this file).
TEST(TrainParity, DecayGroupsMatchTransformersTrainer) {
  const Expected e;
  const LoraQaModel m;
  std::vector<std::string> decay, plain, keys;
  for (const auto& t : m.adapter.trainable) {
    (train::decays(t.key) ? decay : plain).push_back(t.key);
    keys.push_back(t.key);
    EXPECT_TRUE(t.tensor->requires_grad()) << t.key;
  }
  using qlora::peft::testing::sorted;
  EXPECT_EQ(sorted(decay), sorted(strings(e.info.at("decay"))));
  EXPECT_EQ(sorted(plain), sorted(strings(e.info.at("no_decay"))));
  EXPECT_EQ(sorted(keys), sorted(strings(e.info.at("parameter_order"))));
}

// The fixture's sample order is the one the engine draws for epoch 0.
TEST(TrainParity, FixtureOrderIsTheEnginesEpochZeroOrder) {
  const Expected e;
  const int64_t n = e.samples.tensor("input_ids").size(0);
  const auto order = qlora::data::shuffled_indices(static_cast<size_t>(n), e.info.at("seed").get<uint64_t>());
  std::vector<size_t> stored;
  for (int64_t k = 0; k < e.steps(); ++k) {
    const auto rows = e.rows_of_step(k);
    stored.insert(stored.end(), rows.begin(), rows.end());
  }
  EXPECT_EQ(order, stored);
}

TEST(TrainParity, HandLoopMatchesPeftStepForStep) {
  const Expected e;
  LoraQaModel m;
  // clip_grad_norm_ over model.parameters(), in Trainer's order.
  std::vector<at::Tensor> params;
  for (const auto& key : strings(e.info.at("parameter_order"))) {
    for (const auto& t : m.adapter.trainable) {
      if (t.key == key) params.push_back(*t.tensor);
    }
  }
  ASSERT_EQ(params.size(), m.adapter.trainable.size());
  train::AdamWOptions ao;
  ao.beta1 = 0.9;
  ao.beta2 = 0.999;
  ao.eps = 1e-8;
  train::AdamW optimizer(m.groups(e.weight_decay()), ao);
  const train::ScheduleOptions schedule{"linear", e.steps(), e.warmup()};

  std::vector<double> losses, norms, lrs;
  for (int64_t step = 0; step < e.steps(); ++step) {
    qlora::nn::ForwardContext ctx;
    ctx.training = true;
    const at::Tensor loss = m.loss(e, e.rows_of_step(step), ctx);
    loss.backward();
    if (step == 0) {
      double worst = 0;
      for (const auto& t : m.adapter.trainable) {
        ASSERT_TRUE(t.tensor->grad().defined()) << t.key;
        const at::Tensor expected = e.dump.tensor("grad0." + t.key);
        const double diff = max_abs_diff(t.tensor->grad(), expected);
        worst = std::max(worst, diff);
        EXPECT_LE(diff, kGradTol) << t.key << " (|grad| max " << expected.abs().max().item<double>() << ")";
        // The comparison is only meaningful for real gradients (lora_B = 0 would give lora_A none).
        const double size = expected.abs().max().item<double>();
        if (t.key == kNoiseDrivenKey) {
          EXPECT_LE(size, kNoiseGradTol) << t.key;
        } else {
          EXPECT_GT(size, 1e-4) << t.key;
        }
      }
      std::printf("[ parity   ] %-48s max|diff| = %.3g (tol %.2g)\n", "step-0 gradients (hand loop)", worst,
                  kGradTol);
    }
    norms.push_back(train::clip_grad_norm(params, e.max_grad_norm()));
    lrs.push_back(e.lr() * train::lr_factor(schedule, step));
    optimizer.step(lrs.back());
    optimizer.zero_grad();
    losses.push_back(loss.item<double>());
  }
  expect_series_close("loss per step (hand loop)", losses, e.series("loss"), kLossTol);
  expect_series_close("grad norm per step (hand loop)", norms, e.series("grad_norm"), kGradNormTol);
  expect_series_close("lr per step (hand loop)", lrs, e.series("lr"), 0.0);
  expect_final_adapter("final adapter (hand loop)", trained_tensors(m), e);
}

// Serves the fixture's samples by index, exactly as QaTrainTask serves its features, and records the
// indices the engine asked for.
class FixedSamplesTask : public train::TrainTask {
 public:
  explicit FixedSamplesTask(const Expected& e) : e_(e) {}
  int64_t num_train_samples() const override { return e_.samples.tensor("input_ids").size(0); }
  train::MicroBatchLoss train_loss(const std::vector<size_t>& indices,
                                   const qlora::nn::ForwardContext& ctx) override {
    requested.push_back(indices);
    return {m_.loss(e_, indices, ctx), static_cast<int64_t>(indices.size())};
  }
  Json evaluate() override { return Json::object(); }
  train::NamedTensorRefs trainable_parameters() override {
    train::NamedTensorRefs out;
    for (const auto& t : m_.adapter.trainable) out.emplace_back(t.key, *t.tensor);
    return out;
  }
  void save_model(const std::string& dir) override { peft::save_adapter(dir, m_.view, m_.adapter); }
  void load_model(const std::string& dir) override { FAIL() << "the parity run does not resume"; }

  const LoraQaModel& model() const { return m_; }
  std::vector<std::vector<size_t>> requested;

 private:
  const Expected& e_;
  LoraQaModel m_;
};

TEST(TrainParity, RunTrainingMatchesPeftStepForStep) {
  const Expected e;
  FixedSamplesTask task(e);
  TempDir tmp;
  train::TrainerOptions o;
  o.output_dir = tmp.sub("run");
  o.max_steps = e.steps();
  o.micro_batch_size = e.batch();
  o.gradient_accumulation_steps = 1;
  o.learning_rate = e.lr();
  o.weight_decay = e.weight_decay();
  o.warmup_steps = e.warmup();
  o.max_grad_norm = e.max_grad_norm();
  o.seed = e.info.at("seed").get<int64_t>();
  o.logging_steps = 1;
  o.save_total_limit = 1;
  o.show_progress = false;

  std::vector<double> losses, norms, lrs;
  const auto summary = train::run_training(task, o, "", [&](const Json& rec) {
    if (rec.at("split") != "train") return;
    EXPECT_EQ(rec.at("step").get<int64_t>(), static_cast<int64_t>(losses.size()) + 1);
    losses.push_back(rec.at("loss").get<double>());
    norms.push_back(rec.at("grad_norm").get<double>());
    lrs.push_back(rec.at("learning_rate").get<double>());
  });
  EXPECT_EQ(summary.global_step, e.steps());

  ASSERT_EQ(static_cast<int64_t>(task.requested.size()), e.steps());
  for (int64_t k = 0; k < e.steps(); ++k)
    EXPECT_EQ(task.requested[k], e.rows_of_step(k)) << "micro batch " << k;
  expect_series_close("loss per step (run_training)", losses, e.series("loss"), kLossTol);
  expect_series_close("grad norm per step (run_training)", norms, e.series("grad_norm"), kGradNormTol);
  expect_series_close("lr per step (run_training)", lrs, e.series("lr"), 0.0);
  expect_final_adapter("final adapter (run_training)", trained_tensors(task.model()), e);

  // The checkpoint the engine wrote holds the same adapter, under PEFT's keys.
  const auto saved = SafetensorsFile::open(fsys::join(summary.final_checkpoint, "adapter_model.safetensors"));
  std::vector<std::pair<std::string, at::Tensor>> from_file;
  for (const auto& name : saved.names()) {
    ASSERT_EQ(name.rfind(peft::kPeftKeyPrefix, 0), 0u) << name;
    from_file.emplace_back(name.substr(std::string(peft::kPeftKeyPrefix).size()), saved.tensor(name));
  }
  expect_final_adapter("saved checkpoint adapter (run_training)", from_file, e);
}

}  // namespace
