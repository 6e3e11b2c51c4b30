// Gradient checkpointing (nn/checkpoint.h) on a toy LoRA block: the gradients, the dropout masks and
// the generator's final state equal those of the plain forward; the reentrant trap (an input that
// does not require grad) still yields parameter gradients; autocast is re-applied in the recompute.
// The model-level check (tiny XLM-R QA with LoRA) is tests/models/test_xlmr_checkpointing.cpp.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>

#include "qlora/nn/checkpoint.h"
#include "qlora/nn/lora_linear.h"

namespace qlora::nn {
namespace {

// Two adapted projections with dropout, a GELU and a residual: x [B, T, 8] -> [B, T, 8].
struct ToyBlock {
  Linear up, down;
  explicit ToyBlock(uint64_t seed) {
    at::Generator g = at::make_generator<at::CPUGeneratorImpl>(seed);
    auto randn = [&](std::vector<int64_t> shape) { return at::empty(shape).normal_(0, 0.5, g); };
    up.base.weight = randn({16, 8});
    up.base.bias = randn({16});
    down.base.weight = randn({8, 16});
    for (Linear* l : {&up, &down}) {
      l->lora.A = randn({2, l->base.in_features()}).requires_grad_(true);
      l->lora.B = randn({l->base.out_features(), 2}).requires_grad_(true);
      l->lora.scaling = 2.0;
      l->lora.dropout = 0.25;
    }
  }
  at::Tensor operator()(const at::Tensor& x, const ForwardContext& ctx) const {
    const at::Tensor h = at::gelu(lora_linear(x, up, ctx));
    return dropout(lora_linear(h, down, ctx), 0.1, ctx) + x;
  }
  std::vector<at::Tensor> params() const { return {up.lora.A, up.lora.B, down.lora.A, down.lora.B}; }
};

ForwardContext training_ctx(uint64_t seed) {
  ForwardContext ctx;
  ctx.training = true;
  ctx.generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  return ctx;
}

struct RunResult {
  at::Tensor loss, x_grad, rng_after;
  std::vector<at::Tensor> grads;
};

// Two stacked blocks (the second sees the first's checkpointed output), a loss, backward.
RunResult run(bool checkpointing, bool input_requires_grad) {
  const ToyBlock b1(1), b2(2);
  ForwardContext ctx = training_ctx(7);
  at::Tensor x = at::randn({3, 5, 8}, at::make_generator<at::CPUGeneratorImpl>(3));
  if (input_requires_grad) x.requires_grad_(true);
  at::Tensor h = x;
  for (const ToyBlock* b : {&b1, &b2}) {
    const auto block = [b, ctx](const at::Tensor& in) { return (*b)(in, ctx); };
    h = checkpointing ? checkpoint_block(block, h, ctx) : block(h);
  }
  const at::Tensor loss = (h * h).mean();
  loss.backward();
  RunResult r{loss.detach(), input_requires_grad ? x.grad() : at::Tensor(), ctx.generator->get_state(), {}};
  for (const ToyBlock* b : {&b1, &b2}) {
    for (const auto& p : b->params()) r.grads.push_back(p.grad());
  }
  return r;
}

// The recompute runs the same kernels on the same values with the same dropout masks, so the results
// are bit-identical, not merely close.
TEST(Checkpoint, GradientsEqualThePlainForward) {
  const RunResult plain = run(false, true), ckpt = run(true, true);
  EXPECT_TRUE(at::equal(plain.loss, ckpt.loss));
  ASSERT_TRUE(ckpt.x_grad.defined());
  EXPECT_TRUE(at::equal(plain.x_grad, ckpt.x_grad));
  ASSERT_EQ(plain.grads.size(), ckpt.grads.size());
  for (size_t i = 0; i < plain.grads.size(); ++i) {
    ASSERT_TRUE(ckpt.grads[i].defined()) << i;
    EXPECT_TRUE(at::equal(plain.grads[i], ckpt.grads[i])) << "param " << i;
  }
  // The generator ends where the plain run leaves it: later draws are unchanged by checkpointing.
  EXPECT_TRUE(at::equal(plain.rng_after, ckpt.rng_after));
}

// torch.utils.checkpoint(use_reentrant=True) returns an output that does not require grad when the
// input does not (frozen embeddings), silently dropping every LoRA gradient; ours does not.
TEST(Checkpoint, InputWithoutGradStillTrainsTheBlock) {
  const RunResult plain = run(false, false), ckpt = run(true, false);
  EXPECT_TRUE(at::equal(plain.loss, ckpt.loss));
  for (size_t i = 0; i < plain.grads.size(); ++i) {
    ASSERT_TRUE(ckpt.grads[i].defined()) << "param " << i << " got no gradient";
    EXPECT_GT(ckpt.grads[i].abs().max().item<double>(), 0.0);
    EXPECT_TRUE(at::equal(plain.grads[i], ckpt.grads[i])) << "param " << i;
  }
}

TEST(Checkpoint, WithoutGradModeIsThePlainBlock) {
  const ToyBlock b(1);
  const ForwardContext ctx;  // eval: no dropout
  const at::Tensor x = at::randn({2, 3, 8});
  at::NoGradGuard no_grad;
  const at::Tensor y = checkpoint_block([&](const at::Tensor& in) { return b(in, ctx); }, x, ctx);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(at::equal(y, b(x, ctx)));
}

TEST(Checkpoint, SeveralInputsEachGetTheirGradient) {
  const at::Tensor a = at::randn({4, 3}).requires_grad_(true), s = at::randn({4, 3}).requires_grad_(true);
  const at::Tensor frozen = at::randn({4, 3});
  const MultiInputBlock block = [](const std::vector<at::Tensor>& in) {
    return at::tanh(in[0] * in[1]) + in[2];
  };
  (checkpoint_block(block, {a, s, frozen}, {}).sum()).backward();
  const at::Tensor ga = a.grad().clone(), gs = s.grad().clone();
  a.mutable_grad() = at::Tensor();
  s.mutable_grad() = at::Tensor();
  block({a, s, frozen}).sum().backward();
  EXPECT_TRUE(at::equal(ga, a.grad()));
  EXPECT_TRUE(at::equal(gs, s.grad()));
}

// The backward runs outside the trainer's autocast region; the recompute must still run in bf16 as
// the forward did, or the gradients would come from a different (fp32) function.
TEST(Checkpoint, RecomputeUsesTheForwardAutocast) {
  auto grads = [](bool checkpointing, bool autocast = true) {
    const ToyBlock b(5);
    const ForwardContext ctx = training_ctx(9);
    const at::Tensor x = at::randn({2, 4, 8}, at::make_generator<at::CPUGeneratorImpl>(4));
    at::Tensor loss;
    {
      at::autocast::set_autocast_enabled(at::kCPU, autocast);
      at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
      const auto block = [&b, ctx](const at::Tensor& in) { return b(in, ctx); };
      const at::Tensor y = checkpointing ? checkpoint_block(block, x, ctx) : block(x);
      loss = y.to(at::kFloat).pow(2).mean();
      at::autocast::set_autocast_enabled(at::kCPU, false);
      at::autocast::clear_cache();
    }
    loss.backward();
    std::vector<at::Tensor> out;
    for (const auto& p : b.params()) out.push_back(p.grad());
    return out;
  };
  const auto plain = grads(false), ckpt = grads(true), fp32 = grads(false, false);
  for (size_t i = 0; i < plain.size(); ++i) {
    EXPECT_TRUE(at::equal(plain[i], ckpt[i])) << "param " << i;
    EXPECT_FALSE(at::equal(plain[i], fp32[i])) << "autocast had no effect on param " << i;
  }
  EXPECT_FALSE(at::autocast::is_autocast_enabled(at::kCPU));
}

}  // namespace
}  // namespace qlora::nn
