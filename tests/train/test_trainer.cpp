// The training engine on a toy task (linear regression with input dropout): exact resume, a
// crash in the middle of a checkpoint save, best-checkpoint retention and early stopping.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>

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
  // big: adds a 4480-element parameter (above bnb's min_8bit_size) with its own small loss term.
  explicit ToyTask(int64_t samples = 37, bool big = false) {
    at::manual_seed(11);  // data only; model init is fixed below
    x_ = at::randn({samples, 4});
    const auto w_true = at::tensor({1.5f, -2.0f, 0.5f, 3.0f});
    y_ = at::matmul(x_, w_true) + 0.1 * at::randn({samples});
    vx_ = at::randn({16, 4});
    vy_ = at::matmul(vx_, w_true);
    w_ = at::zeros({4}).set_requires_grad(true);
    b_ = at::zeros({1}).set_requires_grad(true);
    if (big) {
      big_target_ = at::randn({4480});
      big_ = at::zeros({4480}).set_requires_grad(true);
    }
  }
  int64_t num_train_samples() const override { return x_.size(0); }
  train::MicroBatchLoss train_loss(const std::vector<size_t>& indices,
                                   const qlora::nn::ForwardContext& ctx) override {
    if (calls_++ == throw_at_call_) throw Interrupt();
    std::vector<int64_t> idx(indices.begin(), indices.end());
    const auto sel = at::tensor(idx, at::kLong);
    const auto x = qlora::nn::dropout(x_.index_select(0, sel), 0.2, ctx);
    const auto product = at::matmul(x, w_);  // [N]; in the autocast dtype under mixed precision
    pred_dtype_ = product.scalar_type();
    const auto pred = product + b_;
    saw_checkpointing_ = ctx.gradient_checkpointing;
    losses_.push_back(-1);  // placeholder replaced below
    auto loss = at::mse_loss(pred, y_.index_select(0, sel));
    if (big_.defined()) loss = loss + 0.1 * at::mse_loss(big_, big_target_);
    if (inf_at_call_ >= 0 && calls_ - 1 == inf_at_call_) loss = loss * INFINITY;  // fp16 overflow
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
  train::NamedTensorRefs trainable_parameters() override {
    if (big_.defined()) return {{"w", w_}, {"b", b_}, {"big", big_}};
    return {{"w", w_}, {"b", b_}};
  }
  void save_model(const std::string& dir) override {
    std::vector<std::pair<std::string, at::Tensor>> t = {{"w", w_.detach()}, {"b", b_.detach()}};
    if (big_.defined()) t.emplace_back("big", big_.detach());
    qlora::save_safetensors(dir + "/model.safetensors", t);
    if (throw_on_save_ >= 0 && saves_++ == throw_on_save_) throw Interrupt();  // dies mid-checkpoint
  }
  void load_model(const std::string& dir) override {
    const auto f = qlora::SafetensorsFile::open(dir + "/model.safetensors");
    at::NoGradGuard g;
    w_.copy_(f.tensor("w"));
    b_.copy_(f.tensor("b"));
    if (big_.defined()) big_.copy_(f.tensor("big"));
  }

  at::Tensor x_, y_, vx_, vy_, w_, b_, big_, big_target_;
  at::ScalarType pred_dtype_ = at::kFloat;
  bool saw_checkpointing_ = false;
  int64_t inf_at_call_ = -1;
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

// on_resume gets the checkpoint's step (the metrics writer cuts its records there), and a checkpoint
// whose dropout generator state is for the other kind of device (a CUDA run's "cuda" key, resumed on the
// CPU) is one error naming the file, not a silently reseeded generator.
TEST(Trainer, ResumeReportsItsStepAndRefusesAnotherDevicesGenerator) {
  const auto dir = fresh_dir("rng_device");
  ToyTask task;
  auto o = options(dir);
  o.max_steps = 3;
  train::run_training(task, o);
  ToyTask again;
  o.max_steps = 6;
  int64_t resumed_at = -1;
  train::run_training(again, o, dir + "/checkpoint-3", nullptr, [&](int64_t step) { resumed_at = step; });
  EXPECT_EQ(resumed_at, 3);

  const std::string rng = dir + "/checkpoint-3/rng_state.safetensors";
  const auto saved = qlora::SafetensorsFile::open(rng);
  const at::Tensor state = saved.tensor("cpu").clone();
  qlora::save_safetensors(rng, {{"cuda", state}});
  ToyTask third;
  try {
    train::run_training(third, o, dir + "/checkpoint-3");
    FAIL() << "expected an error";
  } catch (const qlora::Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("rng_state.safetensors: no 'cpu' generator state"), std::string::npos) << what;
    EXPECT_NE(what.find("written by a CUDA run"), std::string::npos) << what;
  }
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

// Runs `o` uninterrupted, and again interrupted after checkpoint-6 then resumed from it; the step
// losses and final weights must be identical (bit-exact).
void expect_exact_resume(const std::string& name, const train::TrainerOptions& base, bool big,
                         int64_t inf_at_call) {
  auto o = base;
  o.output_dir = fresh_dir(name + "_full");
  ToyTask full(37, big);
  full.inf_at_call_ = inf_at_call;
  std::vector<Json> log_a;
  train::run_training(full, o, "", [&](const Json& r) { log_a.push_back(r); });

  o.output_dir = fresh_dir(name + "_interrupted");
  ToyTask first(37, big);
  first.inf_at_call_ = inf_at_call;
  first.throw_at_call_ = 15;  // step 8: after checkpoint-6
  std::vector<Json> log_b;
  EXPECT_THROW(train::run_training(first, o, "", [&](const Json& r) { log_b.push_back(r); }), Interrupt);
  ASSERT_EQ(train::latest_checkpoint(o.output_dir), o.output_dir + "/checkpoint-6");
  ToyTask second(37, big);  // the overflow (if any) happened before the checkpoint
  std::vector<Json> log_c;
  train::run_training(second, o, "latest", [&](const Json& r) { log_c.push_back(r); });
  auto la = step_losses(log_a), lb = step_losses(log_b), lc = step_losses(log_c);
  lb.resize(6);
  lb.insert(lb.end(), lc.begin(), lc.end());
  ASSERT_EQ(lb.size(), la.size());
  for (size_t i = 0; i < la.size(); ++i) {
    if (std::isfinite(la[i])) {
      EXPECT_EQ(lb[i], la[i]) << name << " step " << i + 1;
    }
  }
  EXPECT_TRUE(at::equal(second.w_.detach(), full.w_.detach())) << name;
  if (big) {
    EXPECT_TRUE(at::equal(second.big_.detach(), full.big_.detach())) << name;
  }
  EXPECT_EQ(log_c.back().value("skipped_steps", 0), log_a.back().value("skipped_steps", 0)) << name;
}

// fp16 with GradScaler's defaults (init scale 2**16): the toy's early gradients overflow fp16 as real
// ones do, and an infinite loss is injected at step 3 (its first micro batch). Every overflow skips
// the optimizer step and halves the scale; the lr schedule is held back (transformers' Trainer does
// not step the scheduler when GradScaler skipped the optimizer step); the scaler state, the skipped
// count and the optimizer's own step count resume exactly.
TEST(TrainerMemory, Fp16SkipsOverflowStepsAndResumesExactly) {
  auto o = options(fresh_dir("fp16"));
  o.mixed_precision = "fp16";
  ToyTask task;
  task.inf_at_call_ = 4;
  std::vector<Json> log;
  const auto summary = train::run_training(task, o, "", [&](const Json& r) { log.push_back(r); });
  EXPECT_EQ(task.pred_dtype_, at::kHalf);  // the forward ran under fp16 autocast
  EXPECT_EQ(task.w_.scalar_type(), at::kFloat);
  std::vector<Json> rec;
  for (const auto& r : log) {
    if (r["split"] == "train") rec.push_back(r);
  }
  ASSERT_EQ(rec.size(), 12u);
  EXPECT_GE(summary.skipped_steps, 1);
  EXPECT_EQ(summary.skipped_steps, rec.back()["skipped_steps"].get<int64_t>());
  EXPECT_LT(summary.skipped_steps, 12);  // it does train
  double scale = 65536.0;
  int64_t skipped = 0;
  for (size_t i = 0; i < rec.size(); ++i) {
    const bool skip = rec[i]["skipped_steps"].get<int64_t>() == skipped + 1;
    if (i == 2) {
      EXPECT_TRUE(skip) << "the injected inf at step 3";
    }
    if (skip) {
      scale *= 0.5;  // backoff_factor; no growth within growth_interval 2000
      ++skipped;
      if (i + 1 < rec.size()) {
        EXPECT_EQ(rec[i + 1]["learning_rate"].get<double>(), rec[i]["learning_rate"].get<double>()) << i;
      }
    }
    EXPECT_EQ(rec[i]["skipped_steps"].get<int64_t>(), skipped) << "step " << i + 1;
    EXPECT_EQ(rec[i]["loss_scale"].get<double>(), scale) << "step " << i + 1;
  }
  EXPECT_TRUE(fsys::exists(o.output_dir + "/checkpoint-12/scaler.safetensors"));
  expect_exact_resume("fp16_resume", o, false, 4);
}

TEST(TrainerMemory, Bf16AutocastKeepsFp32MasterWeights) {
  auto o = options(fresh_dir("bf16"));
  o.mixed_precision = "bf16";
  ToyTask task;
  std::vector<Json> log;
  train::run_training(task, o, "", [&](const Json& r) { log.push_back(r); });
  EXPECT_EQ(task.pred_dtype_, at::kBFloat16);
  EXPECT_EQ(task.w_.scalar_type(), at::kFloat);
  const auto losses = step_losses(log);
  EXPECT_LT(losses.back(), 0.5 * losses.front());
  EXPECT_FALSE(log.back().contains("loss_scale"));
}

// Every optimizer variant keeps its state in checkpoints: resume is exact with each.
TEST(TrainerMemory, OptimizerVariantsResumeExactly) {
  for (const std::string optim : {"paged_adamw_32bit", "adamw_8bit", "paged_adamw_8bit"}) {
    auto o = options("");
    o.optim = optim;
    expect_exact_resume(optim, o, /*big=*/true, -1);
  }
  // The 8-bit states are what the checkpoint holds for the big parameter.
  const auto opt =
      qlora::SafetensorsFile::open(::testing::TempDir() + "trainer_adamw_8bit_full_" +
                                   std::to_string(::getpid()) + "/checkpoint-12/optimizer.safetensors");
  EXPECT_EQ(opt.tensor("big.state1").scalar_type(), at::kByte);
  EXPECT_EQ(opt.tensor("w.exp_avg").numel(), 4);  // below min_8bit_size: 32-bit states
}

TEST(TrainerMemory, GradientCheckpointingReachesTheTask) {
  auto o = options(fresh_dir("gc"));
  o.max_steps = 1;
  o.gradient_checkpointing = true;
  ToyTask task;
  train::run_training(task, o);
  EXPECT_TRUE(task.saw_checkpointing_);
}

TEST(TrainerMemory, UnknownSettingsAreErrors) {
  auto o = options(fresh_dir("bad"));
  o.optim = "sgd";
  ToyTask task;
  EXPECT_THROW(train::run_training(task, o), qlora::Error);
  o.optim = "adamw_torch";
  o.mixed_precision = "fp8";
  EXPECT_THROW(train::run_training(task, o), qlora::Error);
}

}  // namespace
