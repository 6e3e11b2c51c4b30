// Dynamic loss scaling for fp16 mixed precision with torch.amp.GradScaler's semantics, built on the
// same ATen kernels (_amp_foreach_non_finite_check_and_unscale_, _amp_update_scale_): the loss is
// multiplied by the scale before backward; the gradients are unscaled (before clipping) and checked
// for inf/nan; an overflowing step is skipped and the scale multiplied by backoff_factor; after
// growth_interval consecutive good steps the scale is multiplied by growth_factor.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace qlora::train {

struct LossScalerOptions {
  double init_scale = 65536.0;  // 2**16
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

class DynamicLossScaler {
 public:
  explicit DynamicLossScaler(LossScalerOptions options = {});

  // loss * scale (GradScaler.scale); the scale moves to the loss's device on first use.
  at::Tensor scale(const at::Tensor& loss);
  // Divides every defined gradient by the scale in place (GradScaler.unscale_). Returns true when
  // any gradient holds an inf or nan: the optimizer step must then be skipped. Once per step.
  bool unscale(const std::vector<at::Tensor>& params);
  // Adjusts the scale after the step (GradScaler.update) from the last unscale's finding.
  void update();

  double scale_value() const;
  int64_t growth_tracker() const;
  // "scale" (float32 scalar) and "growth_tracker" (int32 scalar), for checkpoints.
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  void load_state(const std::vector<std::pair<std::string, at::Tensor>>& state);

 private:
  void ensure_device(const at::Device& device);
  LossScalerOptions options_;
  at::Tensor scale_;           // [] float32
  at::Tensor growth_tracker_;  // [] int32: consecutive steps without overflow
  at::Tensor found_inf_;       // [] float32: from the last unscale
};

}  // namespace qlora::train
