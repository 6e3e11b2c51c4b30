// Memory features of the training engine against their references
// (tools/gen_train_memory_fixtures.py -> tests/fixtures/train/memory): the fp16 dynamic loss scaler
// against torch.amp.GradScaler("cpu"), 8-bit AdamW against bitsandbytes 0.50.2's AdamW8bit (its CPU
// kernels), and paged AdamW (host-resident moments) against torch.optim.AdamW.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "parity.h"
#include "qlora/io/safetensors.h"
#include "qlora/train/adamw8bit.h"
#include "qlora/train/loss_scaler.h"
#include "qlora/train/optimizer.h"

namespace {

namespace train = qlora::train;
const std::string kDir = std::string(QLORA_FIXTURES_DIR) + "/train/memory/";

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// GradScaler's scale / unscale_ / step / update over 14 steps with inf, -inf and nan gradients
// injected (steps 2, 5, 6, 7) and growth_interval 3: the scale and growth-tracker sequence, the skip
// decisions, the unscaled gradients and the parameters of a plain SGD after every step.
TEST(LossScaler, MatchesTorchGradScaler) {
  const auto meta = read_json(kDir + "gradscaler.json");
  const auto file = qlora::SafetensorsFile::open(kDir + "gradscaler.safetensors");
  at::Tensor p1 = file.tensor("init.p1").clone().requires_grad_(true);
  at::Tensor p2 = file.tensor("init.p2").clone().requires_grad_(true);
  train::DynamicLossScaler scaler({meta["init_scale"].get<double>(), meta["growth_factor"].get<double>(),
                                   meta["backoff_factor"].get<double>(),
                                   meta["growth_interval"].get<int64_t>()});
  const double lr = meta["lr"].get<double>();
  int skipped = 0;
  for (int s = 0; s < meta["steps"].get<int>(); ++s) {
    const std::string k = std::to_string(s);
    p1.mutable_grad() = at::Tensor();
    p2.mutable_grad() = at::Tensor();
    const at::Tensor loss =
        (p1 * file.tensor("dir." + k + ".p1")).sum() + (p2 * file.tensor("dir." + k + ".p2")).sum();
    scaler.scale(loss).backward();
    const bool overflow = scaler.unscale({p1, p2});
    ASSERT_EQ(overflow, meta["skipped"][s].get<bool>()) << "step " << s;
    if (!overflow) {
      // Unscaling multiplies by the float32 reciprocal of a power of two: exact, so bit-equal.
      EXPECT_TRUE(at::equal(p1.grad(), file.tensor("unscaled." + k + ".p1"))) << "step " << s;
      EXPECT_TRUE(at::equal(p2.grad(), file.tensor("unscaled." + k + ".p2"))) << "step " << s;
      at::NoGradGuard no_grad;
      p1.add_(p1.grad(), -lr);  // torch.optim.SGD(lr) without momentum
      p2.add_(p2.grad(), -lr);
    }
    skipped += overflow;
    scaler.update();
    EXPECT_EQ(scaler.scale_value(), meta["scale"][s].get<double>()) << "step " << s;
    EXPECT_EQ(scaler.growth_tracker(), meta["growth_tracker"][s].get<int64_t>()) << "step " << s;
    // p - lr * g: one float32 op, which a CPU without vector kernels may fuse differently (tests/parity.h).
    qlora::testing::expect_eps_close("p1 after step " + k, p1.detach(), file.tensor("param." + k + ".p1"), 4);
    qlora::testing::expect_eps_close("p2 after step " + k, p2.detach(), file.tensor("param." + k + ".p2"), 4);
  }
  EXPECT_EQ(skipped, 4);
}

TEST(LossScaler, DefaultsAreGradScalersAndStateRoundTrips) {
  train::DynamicLossScaler a;
  EXPECT_EQ(a.scale_value(), 65536.0);  // torch.amp.GradScaler: init_scale 2**16
  at::Tensor p = at::ones({3}).requires_grad_(true);
  p.mutable_grad() = at::full({3}, INFINITY);
  EXPECT_TRUE(a.unscale({p}));
  a.update();
  EXPECT_EQ(a.scale_value(), 32768.0);  // backoff_factor 0.5
  train::DynamicLossScaler b;
  b.load_state(a.state());
  EXPECT_EQ(b.scale_value(), 32768.0);
  EXPECT_EQ(b.growth_tracker(), 0);
  EXPECT_THROW(b.load_state({}), std::exception);
}

TEST(AdamW8bit, DynamicMapsMatchBitsandbytes) {
  const auto file = qlora::SafetensorsFile::open(kDir + "adamw8bit.safetensors");
  EXPECT_TRUE(at::equal(train::bnb_dynamic_map(true), file.tensor("qmap.signed")));
  EXPECT_TRUE(at::equal(train::bnb_dynamic_map(false), file.tensor("qmap.unsigned")));
}

// bnb.optim.AdamW8bit for 6 steps: a [44, 100] parameter (4400 >= min_8bit_size: 8-bit states in 18
// blocks of 256, the last partial) and a [10, 12] one (32-bit states on bnb's 32-bit kernel).
TEST(AdamW8bit, MatchesBitsandbytesOverSixSteps) {
  const auto meta = read_json(kDir + "adamw8bit.json");
  const auto file = qlora::SafetensorsFile::open(kDir + "adamw8bit.safetensors");
  at::Tensor big = file.tensor("init.big").clone().requires_grad_(true);
  at::Tensor small = file.tensor("init.small").clone().requires_grad_(true);
  train::AdamWOptions o;
  o.beta1 = meta["betas"][0].get<double>();
  o.beta2 = meta["betas"][1].get<double>();
  o.eps = meta["eps"].get<double>();
  train::AdamW opt({train::ParamGroup{{"big", "small"}, {big, small}, meta["weight_decay"].get<double>()}},
                   train::adamw_variant("adamw_8bit", o));
  for (int s = 0; s < meta["steps"].get<int>(); ++s) {
    const std::string k = std::to_string(s);
    big.mutable_grad() = file.tensor("grad." + k + ".big").clone();
    small.mutable_grad() = file.tensor("grad." + k + ".small").clone();
    opt.step(meta["lr"].get<double>());
    std::map<std::string, at::Tensor> state;
    for (const auto& [name, t] : opt.state()) state[name] = t;
    ASSERT_EQ(state.count("big.state1"), 1u);
    ASSERT_EQ(state.count("small.exp_avg"), 1u);
    // Same float32 operations in the same order as bnb's CPU kernel; codes are exact integers.
    for (const char* key : {"state1", "state2", "absmax1", "absmax2"}) {
      const at::Tensor expected = file.tensor("state." + k + ".big." + key);
      const at::Tensor& actual = state["big." + std::string(key)];
      EXPECT_TRUE(at::equal(actual, expected))
          << key << " after step " << s << ": " << (actual != expected).sum().item<int64_t>() << " differ";
    }
    EXPECT_TRUE(at::equal(state["small.exp_avg"], file.tensor("state." + k + ".small.state1"))) << s;
    EXPECT_TRUE(at::equal(state["small.exp_avg_sq"], file.tensor("state." + k + ".small.state2"))) << s;
    // The parameter update is float32 elementwise math: bit-equal on the fixture's machine, within a few
    // eps where another CPU's vector kernels round one op differently (tests/parity.h).
    qlora::testing::expect_eps_close("big after step " + k, big.detach(), file.tensor("param." + k + ".big"),
                                     4);
    qlora::testing::expect_eps_close("small after step " + k, small.detach(),
                                     file.tensor("param." + k + ".small"), 4);
  }
}

// bnb's CPU quantize_blockwise on 3996 values per map (an all-zero block, a partial last block).
TEST(AdamW8bit, QuantizerMatchesBitsandbytes) {
  const auto file = qlora::SafetensorsFile::open(kDir + "adamw8bit.safetensors");
  for (const std::string name : {"signed", "unsigned"}) {
    const auto q = train::quantize_blockwise(file.tensor("quant." + name + ".x"),
                                             train::bnb_dynamic_map(name == "signed"));
    const at::Tensor expected = file.tensor("quant." + name + ".codes");
    EXPECT_TRUE(at::equal(q.codes, expected))
        << name << ": " << (q.codes != expected).sum().item<int64_t>() << " differ";
    EXPECT_TRUE(at::equal(q.absmax, file.tensor("quant." + name + ".absmax"))) << name;
  }
}

TEST(AdamW8bit, QuantizeRoundTripIsWithinOneCode) {
  at::manual_seed(0);
  const at::Tensor x = at::randn({1000});  // 3 full blocks and a partial one
  const at::Tensor code = train::bnb_dynamic_map(true);
  const auto q = train::quantize_blockwise(x, code);
  EXPECT_EQ(q.absmax.numel(), 4);
  const at::Tensor back = train::dequantize_blockwise(q.codes, q.absmax, code);
  // The dynamic map's widest gap near 1 is about 0.05 of absmax (|x| <= absmax < 4.5 here).
  EXPECT_LT(max_diff(back, x), 0.05 * q.absmax.max().item<double>());
}

// paged_adamw_32bit keeps the moments on the host; on CPU the update is adamw_torch's exactly
// (tests/fixtures/train/optim.*: torch.optim.AdamW, 6 clipped steps).
TEST(PagedAdamW, IdenticalToTorchAdamWOnCpu) {
  const auto file =
      qlora::SafetensorsFile::open(std::string(QLORA_FIXTURES_DIR) + "/train/optim.safetensors");
  std::ifstream in(std::string(QLORA_FIXTURES_DIR) + "/train/optim.json");
  const auto meta = nlohmann::json::parse(in)["adamw"];
  std::map<std::string, at::Tensor> p;
  for (const char* k : {"w1", "w2", "b"})
    p[k] = file.tensor(std::string("init.") + k).clone().set_requires_grad(true);
  train::AdamW opt(
      {train::ParamGroup{{"w1", "w2"}, {p["w1"], p["w2"]}, 0.01}, train::ParamGroup{{"b"}, {p["b"]}, 0.0}},
      train::adamw_variant("paged_adamw_32bit", {}));
  for (int step = 0; step < 6; ++step) {
    for (auto& [k, t] : p) t.mutable_grad() = file.tensor("grad." + std::to_string(step) + "." + k).clone();
    train::clip_grad_norm({p["w1"], p["w2"], p["b"]}, 1.0);
    opt.step(meta["lrs"][step].get<double>());
    for (auto& [k, t] : p) {
      qlora::testing::expect_eps_close("paged " + k + " after step " + std::to_string(step), t.detach(),
                                       file.tensor("param." + std::to_string(step) + "." + k), 4);
    }
  }
  for (const auto& [name, tensor] : opt.state()) EXPECT_TRUE(tensor.device().is_cpu()) << name;
}

TEST(Optim, UnknownNameIsAnError) { EXPECT_THROW(train::adamw_variant("adamw_4bit", {}), std::exception); }

}  // namespace
