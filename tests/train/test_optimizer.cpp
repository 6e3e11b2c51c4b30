// AdamW, gradient clipping and learning-rate schedules against torch.optim.AdamW (foreach=False),
// torch.nn.utils.clip_grad_norm_ and transformers.get_scheduler (tools/gen_optim_fixtures.py).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "parity.h"
#include "qlora/io/safetensors.h"
#include "qlora/train/optimizer.h"
#include "qlora/train/schedule.h"

namespace {

using qlora::train::AdamW;
using qlora::train::ParamGroup;

const std::string kDir = std::string(QLORA_FIXTURES_DIR) + "/train/";

nlohmann::json fixture_json() {
  std::ifstream in(kDir + "optim.json");
  return nlohmann::json::parse(in);
}

TEST(AdamW, MatchesTorchOverSixClippedSteps) {
  const auto file = qlora::SafetensorsFile::open(kDir + "optim.safetensors");
  const auto meta = fixture_json()["adamw"];
  std::map<std::string, at::Tensor> p;
  for (const char* k : {"w1", "w2", "b"}) {
    p[k] = file.tensor(std::string("init.") + k).clone().set_requires_grad(true);
  }
  AdamW opt({ParamGroup{{"w1", "w2"}, {p["w1"], p["w2"]}, 0.01}, ParamGroup{{"b"}, {p["b"]}, 0.0}}, {});
  for (int step = 0; step < 6; ++step) {
    for (auto& [k, t] : p) t.mutable_grad() = file.tensor("grad." + std::to_string(step) + "." + k).clone();
    const double norm = qlora::train::clip_grad_norm({p["w1"], p["w2"], p["b"]}, 1.0);
    // The norm is a float32 tensor in torch; compare at float32 resolution.
    EXPECT_NEAR(norm, meta["grad_norms"][step].get<double>(), 1e-6 * norm) << "step " << step;
    opt.step(meta["lrs"][step].get<double>());
    for (auto& [k, t] : p) {
      // Same libtorch kernels in the same order as the Python single-tensor AdamW: bit-identical on the
      // machine that made the fixture; another CPU's vector kernels may round one op differently.
      qlora::testing::expect_eps_close("param " + k + " after step " + std::to_string(step), t.detach(),
                                       file.tensor("param." + std::to_string(step) + "." + k), 4);
    }
  }
  EXPECT_EQ(opt.steps(), 6);
  for (const auto& [name, tensor] : opt.state()) {
    qlora::testing::expect_eps_close(
        "state " + name, tensor,
        file.tensor(name.substr(name.find('.') + 1) + "." + name.substr(0, name.find('.'))), 4);
  }
}

TEST(AdamW, StateRoundTripResumesExactly) {
  at::manual_seed(3);
  auto a = at::randn({3, 2}).set_requires_grad(true);
  auto b = a.detach().clone().set_requires_grad(true);
  AdamW first({ParamGroup{{"a"}, {a}, 0.1}}, {});
  const auto grads = at::randn({4, 3, 2});
  for (int s = 0; s < 2; ++s) {
    a.mutable_grad() = grads[s].clone();
    first.step(1e-2);
  }
  // A second optimizer restored from the first's state continues identically.
  {
    at::NoGradGuard g;
    b.copy_(a);
  }
  AdamW second({ParamGroup{{"a"}, {b}, 0.1}}, {});
  std::vector<std::pair<std::string, at::Tensor>> saved;
  for (const auto& [n, t] : first.state()) saved.emplace_back(n, t.clone());
  second.load_state(saved, first.steps());
  for (int s = 2; s < 4; ++s) {
    a.mutable_grad() = grads[s].clone();
    b.mutable_grad() = grads[s].clone();
    first.step(1e-2);
    second.step(1e-2);
  }
  EXPECT_TRUE(at::equal(a.detach(), b.detach()));
  EXPECT_THROW(second.load_state({}, 1), std::exception);
}

TEST(AdamW, ParametersWithoutGradientsAreUntouched) {
  auto a = at::ones({2}).set_requires_grad(true);
  AdamW opt({ParamGroup{{"a"}, {a}, 0.5}}, {});
  opt.step(1.0);
  EXPECT_TRUE(at::equal(a.detach(), at::ones({2})));
}

TEST(Schedule, MatchesTransformersGetScheduler) {
  const auto s = fixture_json()["schedules"];
  for (const auto& [ours, theirs] : {std::pair{"linear", "linear"}, std::pair{"cosine", "cosine"},
                                     std::pair{"constant", "constant_with_warmup"}}) {
    const qlora::train::ScheduleOptions o{ours, 11, 3};
    for (int k = 0; k < 11; ++k) {
      // transformers computes the same double expression; allow one ulp-scale difference.
      EXPECT_NEAR(qlora::train::lr_factor(o, k), s[theirs][k].get<double>(), 1e-15) << ours << " step " << k;
    }
  }
  EXPECT_EQ(qlora::train::warmup_steps_for(37, 0, 0.1), s["warmup_ratio_0.1_of_37"].get<int64_t>());
  EXPECT_EQ(qlora::train::warmup_steps_for(37, 5, 0.1), 5);
}

TEST(Decay, BiasesAndNormsDoNotDecay) {
  using qlora::train::decays;
  EXPECT_TRUE(decays("encoder.layer.0.attention.self.query.weight"));
  EXPECT_TRUE(decays("qa_outputs.weight"));
  EXPECT_FALSE(decays("qa_outputs.bias"));
  EXPECT_FALSE(decays("encoder.layer.0.output.LayerNorm.weight"));
  EXPECT_FALSE(decays("model.layers.3.input_layernorm.weight"));
  EXPECT_FALSE(decays("model.norm.weight"));
  EXPECT_FALSE(decays("encoder.block.0.layer.0.layer_norm.weight"));
  EXPECT_FALSE(decays("transformer.blocks.0.norm_1.weight"));
}

}  // namespace
