// AdamW with PyTorch's semantics (torch.optim.AdamW, single-tensor path): decoupled weight
// decay, bias-corrected moments; parameter groups so biases and norms skip the decay. State is
// plain tensors so checkpoints can store it as safetensors and resume exactly.
// Memory variants (train.optim): paged_adamw_32bit keeps the moments in host memory and streams
// each parameter's moments to its device for the update (same arithmetic as adamw_torch);
// adamw_8bit / paged_adamw_8bit keep them blockwise 8-bit quantized with bitsandbytes' AdamW8bit
// semantics (its CPU kernel, see adamw8bit.h), host-resident for the paged one.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qlora::train {

struct AdamWOptions {
  double lr = 1e-3;  // overwritten by the scheduler each step
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool offload_states = false;   // moments in host memory, streamed to the parameter's device per step
  bool eight_bit = false;        // blockwise 8-bit moments (bnb AdamW8bit) for params >= min_8bit_size
  int64_t min_8bit_size = 4096;  // bnb: smaller parameters keep 32-bit states (and bnb's 32-bit kernel)
};

// train.optim -> options: adamw_torch, paged_adamw_32bit, adamw_8bit, paged_adamw_8bit.
AdamWOptions adamw_variant(const std::string& optim, AdamWOptions base);

struct ParamGroup {
  std::vector<std::string> names;  // one per parameter, for checkpoints and messages
  std::vector<at::Tensor> params;  // leaf tensors with requires_grad
  double weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<ParamGroup> groups, AdamWOptions options);

  // One update of every parameter that has a gradient, at learning rate `lr`.
  void step(double lr);
  void zero_grad();

  int64_t steps() const { return step_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  // Named state tensors: "<param>.exp_avg", "<param>.exp_avg_sq" (+ "step" held separately); for
  // 8-bit states "<param>.state1" / ".state2" (uint8 codes) and ".absmax1" / ".absmax2" (float32).
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  // Restores moments and the step count saved by state(); shapes and names must match.
  void load_state(const std::vector<std::pair<std::string, at::Tensor>>& state, int64_t steps);

 private:
  struct Moments {
    at::Tensor exp_avg;  // 32-bit states (float32, like the parameter)
    at::Tensor exp_avg_sq;
    at::Tensor state1, state2;    // 8-bit states: codes into the signed / unsigned dynamic maps
    at::Tensor absmax1, absmax2;  // [blocks] float32
    bool quantized() const { return state1.defined(); }
  };
  void step_32bit(at::Tensor& p, const at::Tensor& grad, Moments& m, double lr, double weight_decay);
  void step_8bit(at::Tensor& p, const at::Tensor& grad, Moments& m, double lr, double weight_decay);
  std::vector<ParamGroup> groups_;
  std::vector<std::vector<Moments>> moments_;  // [group][param]
  AdamWOptions options_;
  int64_t step_ = 0;
};

// torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=2): returns the total norm before
// clipping and scales every gradient by min(1, max_norm / (total + 1e-6)).
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

// Which parameters decay: transformers' Trainer excludes biases and LayerNorm weights.
bool decays(const std::string& param_name);

// transformers Trainer's two AdamW groups, in the given order: the parameters that decay (weight_decay), then
// the biases and norm weights (0).
std::vector<ParamGroup> decay_groups(const std::vector<std::pair<std::string, at::Tensor>>& named,
                                     double weight_decay);

}  // namespace qlora::train
