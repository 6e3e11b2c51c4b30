// The training engine on a toy task (linear regression with input dropout): exact resume, a
// crash in the middle of a checkpoint save, best-checkpoint retention and early stopping.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "qlora/core/error.h"
#include "qlora/core/fs.h"
#include "qlora/io/safetensors.h"
#include "qlora/train/trainer.h"

namespace {

using qlora::Json;
namespace train = qlora::train;
namespace fsys = qlora::fsys;

struct Interrupt : std::runtime_error {
  Interrupt() : std::runtime_error("interrupted") {}
};

class ToyTask : public train::TrainTask {
 public:
  explicit ToyTask(int64_t samples = 37) {
    at::manual_seed(11);  // data only; model init is fixed below
    x_ = at::randn({samples, 4});
    const auto w_true = at::tensor({1.5f, -2.0f, 0.5f, 3.0f});
    y_ = at::matmul(x_, w_true) + 0.1 * at::randn({samples});
    vx_ = at::randn({16, 4});
    vy_ = at::matmul(vx_, w_true);
    w_ = at::zeros({4}).set_requires_grad(true);
    b_ = at::zeros({1}).set_requires_grad(true);
  }
  int64_t num_train_samples() const override { return x_.size(0); }
  train::MicroBatchLoss train_loss(const std::vector<size_t>& indices,
                                   const qlora::nn::ForwardContext& ctx) override {
    if (throw_at_call_ >= 0 && calls_++ == throw_at_call_) throw Interrupt();
    std::vector<int64_t> idx(indices.begin(), indices.end());
    const auto sel = at::tensor(idx, at::kLong);
    const auto x = qlora::nn::dropout(x_.index_select(0, sel), 0.2, ctx);
    const auto pred = at::matmul(x, w_) + b_;
    losses_.push_back(-1);  // placeholder replaced below
    auto loss = at::mse_loss(pred, y_.index_select(0, sel));
    losses_.back() = loss.item<double>();
    return {loss, static_cast<int64_t>(indices.size()) * 4};
  }
  Json evaluate() override {
    const auto loss = at::mse_loss(at::matmul(vx_, w_) + b_, vy_).item<double>();
    if (!eval_script_.empty()) {
      const double v = eval_script_[std::min(evals_++, eval_script_.size() - 1)];
      return {{"loss", loss}, {"f1", v}};
    }
    return {{"loss", loss}};
  }
  train::NamedTensorRefs trainable_parameters() override { return {{"w", w_}, {"b", b_}}; }
  void save_model(const std::string& dir) override {
    qlora::save_safetensors(dir + "/model.safetensors", {{"w", w_.detach()}, {"b", b_.detach()}});
    if (throw_on_save_ >= 0 && saves_++ == throw_on_save_) throw Interrupt();  // dies mid-checkpoint
  }
  void load_model(const std::string& dir) override {
    const auto f = qlora::SafetensorsFile::open(dir + "/model.safetensors");
    at::NoGradGuard g;
    w_.copy_(f.tensor("w"));
    b_.copy_(f.tensor("b"));
  }

  at::Tensor x_, y_, vx_, vy_, w_, b_;
  std::vector<double> losses_;
  std::vector<double> eval_script_;
  size_t evals_ = 0;
  int64_t throw_at_call_ = -1, calls_ = 0;
  int64_t throw_on_save_ = -1, saves_ = 0;
};

std::string fresh_dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "trainer_" + name + "_" + std::to_string(::getpid());
  fsys::remove_all(dir);
  return dir;
}

train::TrainerOptions options(const std::string& dir) {
  train::TrainerOptions o;
  o.output_dir = dir;
  o.max_steps = 12;
  o.micro_batch_size = 5;  // 37 samples: 8 micro batches an epoch, the last one of 2 samples
  o.gradient_accumulation_steps = 2;
  o.learning_rate = 0.5;
  o.weight_decay = 0.01;
  o.warmup_steps = 2;
  o.lr_scheduler = "cosine";
  o.logging_steps = 1;
  o.save_steps = 3;
  o.eval_steps = 3;
  o.save_total_limit = 10;
  o.show_progress = false;
  return o;
}

std::vector<double> step_losses(const std::vector<Json>& log) {
  std::vector<double> out;
  for (const auto& r : log) {
    if (r["split"] == "train") out.push_back(r["loss"].get<double>());
  }
  return out;
}

TEST(Trainer, LearnsAndWritesCheckpoints) {
  const auto dir = fresh_dir("learns");
  ToyTask task;
  std::vector<Json> log;
  const auto summary = train::run_training(task, options(dir), "", [&](const Json& r) { log.push_back(r); });
  EXPECT_EQ(summary.global_step, 12);
  const auto losses = step_losses(log);
  ASSERT_EQ(losses.size(), 12u);
  EXPECT_LT(losses.back(), 0.5 * losses.front());
  for (const char* f :
       {"model.safetensors", "optimizer.safetensors", "rng_state.safetensors", "trainer_state.json"}) {
    EXPECT_TRUE(fsys::exists(dir + "/checkpoint-12/" + f)) << f;
  }
  EXPECT_EQ(train::latest_checkpoint(dir), dir + "/checkpoint-12");
  EXPECT_TRUE(fsys::exists(dir + "/run_summary.json"));
  // 12 steps at 4 optimizer steps an epoch (8 micro batches, accumulation 2): epoch 3.0.
  EXPECT_DOUBLE_EQ(summary.epoch, 3.0);
}

// A run interrupted after checkpoint-6 and resumed from it produces exactly the losses and
// weights of the uninterrupted run: same sample order, dropout masks, optimizer moments and lr.
TEST(Trainer, ResumeEqualsUninterrupted) {
  const auto dir_a = fresh_dir("full");
  ToyTask full;
  std::vector<Json> log_a;
  train::run_training(full, options(dir_a), "", [&](const Json& r) { log_a.push_back(r); });

  const auto dir_b = fresh_dir("interrupted");
  ToyTask first;
  first.throw_at_call_ = 15;  // step 8's micro batches: after checkpoint-6 was written
  std::vector<Json> log_b;
  EXPECT_THROW(train::run_training(first, options(dir_b), "", [&](const Json& r) { log_b.push_back(r); }),
               Interrupt);
  ASSERT_EQ(train::latest_checkpoint(dir_b), dir_b + "/checkpoint-6");

  ToyTask second;  // a new process: fresh weights, restored from the checkpoint
  std::vector<Json> log_c;
  train::run_training(second, options(dir_b), "latest", [&](const Json& r) { log_c.push_back(r); });
  auto la = step_losses(log_a), lb = step_losses(log_b), lc = step_losses(log_c);
  lb.resize(6);
  lb.insert(lb.end(), lc.begin(), lc.end());
  ASSERT_EQ(lb.size(), la.size());
  for (size_t i = 0; i < la.size(); ++i) EXPECT_EQ(lb[i], la[i]) << "step " << i + 1;  // bit-exact
  EXPECT_TRUE(at::equal(second.w_.detach(), full.w_.detach()));
  EXPECT_TRUE(at::equal(second.b_.detach(), full.b_.detach()));
}

// A crash while checkpoint-6 is being written leaves checkpoint-3 as the newest complete one;
// resuming from it finishes with the uninterrupted result.
TEST(Trainer, CrashDuringSaveKeepsLastGoodCheckpoint) {
  const auto dir_a = fresh_dir("ref");
  ToyTask full;
  train::run_training(full, options(dir_a));

  const auto dir = fresh_dir("crash_save");
  ToyTask first;
  first.throw_on_save_ = 1;  // the second save (step 6) dies after writing the model file
  EXPECT_THROW(train::run_training(first, options(dir)), Interrupt);
  EXPECT_FALSE(fsys::exists(dir + "/checkpoint-6"));
  EXPECT_TRUE(fsys::exists(dir + "/.checkpoint-6.tmp"));
  ASSERT_EQ(train::latest_checkpoint(dir), dir + "/checkpoint-3");

  ToyTask second;
  train::run_training(second, options(dir), "latest");
  EXPECT_FALSE(fsys::exists(dir + "/.checkpoint-6.tmp"));
  EXPECT_TRUE(at::equal(second.w_.detach(), full.w_.detach()));
}

TEST(Trainer, KeepsBestCheckpointAndStopsEarly) {
  const auto dir = fresh_dir("best");
  ToyTask task;
  task.eval_script_ = {0.2, 0.5, 0.4, 0.3, 0.45, 0.1};  // best at the 2nd evaluation (step 6)
  auto o = options(dir);
  o.metric_for_best = "f1";
  o.max_steps = 30;
  o.early_stopping_patience = 2;  // evaluations at 9 (0.4) and 12 (0.3) do not beat 0.5
  o.save_total_limit = 1;
  const auto summary = train::run_training(task, o);
  EXPECT_TRUE(summary.stopped_early);
  EXPECT_EQ(summary.global_step, 12);
  EXPECT_EQ(summary.best_step, 6);
  EXPECT_DOUBLE_EQ(summary.best_metric, 0.5);
  EXPECT_TRUE(fsys::exists(dir + "/checkpoint-6/trainer_state.json"));
  EXPECT_TRUE(fsys::exists(summary.final_checkpoint + "/trainer_state.json"));
  // Only the newest and the best survive rotation.
  int count = 0;
  for (const auto& name : fsys::list_directory(dir)) count += name.rfind("checkpoint-", 0) == 0;
  EXPECT_EQ(count, 2);
}

TEST(Trainer, ResumeWithChangedBatchingIsAnError) {
  const auto dir = fresh_dir("changed");
  ToyTask task;
  auto o = options(dir);
  o.max_steps = 3;
  train::run_training(task, o);
  ToyTask again;
  o.max_steps = 6;
  o.micro_batch_size = 4;
  try {
    train::run_training(again, o, "latest");
    FAIL() << "expected an error";
  } catch (const qlora::Error& e) {
    EXPECT_NE(std::string(e.what()).find("micro_batch_size"), std::string::npos) << e.what();
  }
}

}  // namespace
