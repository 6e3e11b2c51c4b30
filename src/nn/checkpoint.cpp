#include "qlora/nn/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include <utility>

#include "qlora/core/error.h"

namespace qlora::nn {
namespace {

// Autocast settings of one device type, captured at forward time and re-applied for the recompute
// (torch.utils.checkpoint does the same), so the recomputed activations have the forward's dtypes.
struct AutocastState {
  at::DeviceType device;
  bool enabled;
  at::ScalarType dtype;
};

std::vector<AutocastState> capture_autocast() {
  std::vector<AutocastState> out;
  for (at::DeviceType d : {at::kCPU, at::kCUDA}) {
    out.push_back({d, at::autocast::is_autocast_enabled(d), at::autocast::get_autocast_dtype(d)});
  }
  return out;
}

// Applies `states` for its lifetime, then restores what was there (torch.autocast's enter / exit).
class AutocastScope {
 public:
  explicit AutocastScope(const std::vector<AutocastState>& states) : previous_(capture_autocast()) {
    apply(states);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    apply(previous_);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  static void apply(const std::vector<AutocastState>& states) {
    for (const auto& s : states) {
      at::autocast::set_autocast_enabled(s.device, s.enabled);
      at::autocast::set_autocast_dtype(s.device, s.dtype);
    }
  }
  std::vector<AutocastState> previous_;
};

// What the backward needs besides the saved inputs; lives in the autograd context.
struct CheckpointState : torch::CustomClassHolder {
  MultiInputBlock block;
  at::Generator generator;  // the generator dropout draws from
  at::Tensor rng_before;    // its state when the forward started
  std::vector<AutocastState> autocast;
};

at::Generator dropout_generator(const std::vector<at::Tensor>& inputs, const ForwardContext& ctx) {
  if (ctx.generator.has_value()) return *ctx.generator;
  const at::Device device = inputs.empty() ? at::Device(at::kCPU) : inputs.front().device();
  return at::globalContext().defaultGenerator(device);
}

at::Tensor get_rng_state(at::Generator& g) {
  std::lock_guard<std::mutex> lock(g.mutex());
  return g.get_state();
}

void set_rng_state(at::Generator& g, const at::Tensor& state) {
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_state(state);
}

class CheckpointFunction : public torch::autograd::Function<CheckpointFunction> {
 public:
  // `anchor` is a scalar leaf that requires grad: it makes the output require grad when no input
  // does (the reentrant-checkpoint trap); it never receives a gradient.
  static at::Tensor forward(torch::autograd::AutogradContext* actx, const at::Tensor& anchor,
                            at::TensorList inputs, c10::intrusive_ptr<CheckpointState> state) {
    (void)anchor;
    actx->save_for_backward(inputs.vec());
    actx->saved_data["state"] = at::IValue::make_capsule(state);
    return state->block(inputs.vec());  // grad mode is off here (Function::apply)
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* actx,
                                                 torch::autograd::variable_list grad_outputs) {
    auto holder = actx->saved_data["state"].toCapsule();
    auto* state = static_cast<CheckpointState*>(holder.get());
    const std::vector<at::Tensor> saved = actx->get_saved_variables();
    std::vector<at::Tensor> detached;
    for (const auto& t : saved) detached.push_back(t.detach().requires_grad_(t.requires_grad()));

    // Replay the forward's dropout draws, then put the generator back where the run is now.
    const at::Tensor rng_now = get_rng_state(state->generator);
    set_rng_state(state->generator, state->rng_before);
    at::Tensor out;
    {
      at::AutoGradMode grad_on(true);
      AutocastScope autocast(state->autocast);
      out = state->block(detached);
    }
    set_rng_state(state->generator, rng_now);

    // Reentrant backward through the recomputed graph: accumulates into the leaves the block uses
    // (LoRA A/B) and into the detached inputs.
    if (out.requires_grad()) torch::autograd::backward({out}, {grad_outputs.at(0)});
    torch::autograd::variable_list grads;
    grads.emplace_back();  // anchor
    for (const auto& t : detached) grads.push_back(t.requires_grad() ? t.grad() : at::Tensor());
    grads.emplace_back();  // state
    return grads;
  }
};

}  // namespace

at::Tensor checkpoint_block(const MultiInputBlock& block, const std::vector<at::Tensor>& inputs,
                            const ForwardContext& ctx) {
  if (!at::GradMode::is_enabled()) return block(inputs);
  for (const auto& t : inputs) {
    if (!t.defined()) fail("checkpoint_block: every input must be a defined tensor");
  }
  auto state = c10::make_intrusive<CheckpointState>();
  state->block = block;
  state->generator = dropout_generator(inputs, ctx);
  state->rng_before = get_rng_state(state->generator);
  state->autocast = capture_autocast();
  const at::Tensor anchor = at::ones({}, at::TensorOptions().dtype(at::kFloat)).requires_grad_(true);
  return CheckpointFunction::apply(anchor, at::TensorList(inputs), state);
}

at::Tensor checkpoint_block(const Block& block, const at::Tensor& x, const ForwardContext& ctx) {
  // By value: the recompute in backward runs after this call has returned.
  return checkpoint_block([block](const std::vector<at::Tensor>& in) { return block(in.at(0)); },
                          std::vector<at::Tensor>{x}, ctx);
}

}  // namespace qlora::nn
