#include "qlora/train/loss_scaler.h"

#include <ATen/ATen.h>

#include <map>

#include "qlora/core/error.h"

namespace qlora::train {

DynamicLossScaler::DynamicLossScaler(LossScalerOptions options) : options_(options) {
  if (options_.init_scale <= 0 || options_.growth_factor <= 1.0 || options_.backoff_factor >= 1.0 ||
      options_.backoff_factor <= 0 || options_.growth_interval <= 0) {
    fail("loss scaler: need init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1, growth_interval > 0");
  }
  scale_ = at::full({}, options_.init_scale, at::kFloat);
  growth_tracker_ = at::zeros({}, at::kInt);
}

void DynamicLossScaler::ensure_device(const at::Device& device) {
  if (scale_.device() == device) return;
  scale_ = scale_.to(device);
  growth_tracker_ = growth_tracker_.to(device);
}

at::Tensor DynamicLossScaler::scale(const at::Tensor& loss) {
  ensure_device(loss.device());
  return loss * scale_;
}

bool DynamicLossScaler::unscale(const std::vector<at::Tensor>& params) {
  at::NoGradGuard no_grad;
  // GradScaler: inv_scale = 1 / scale computed in double, then rounded to float32.
  const at::Tensor inv_scale = scale_.to(at::kDouble).reciprocal().to(at::kFloat);
  found_inf_ = at::zeros({}, scale_.options());
  // One foreach call per (device, dtype) group, as GradScaler._unscale_grads_ does.
  std::map<std::pair<std::string, int>, std::vector<at::Tensor>> groups;
  for (const auto& p : params) {
    const at::Tensor& g = p.grad();
    if (!g.defined()) continue;
    if (g.scalar_type() == at::kHalf)
      fail("loss scaler: cannot unscale float16 gradients (master weights must be fp32)");
    groups[{g.device().str(), static_cast<int>(g.scalar_type())}].push_back(g);
  }
  for (auto& [key, grads] : groups) {
    const at::Device device = grads.front().device();
    at::Tensor found =
        device == found_inf_.device() ? found_inf_ : at::zeros({}, found_inf_.options().device(device));
    at::_amp_foreach_non_finite_check_and_unscale_(grads, found, inv_scale.to(device));
    if (device != found_inf_.device()) found_inf_ += found.to(found_inf_.device());
  }
  return found_inf_.item<float>() != 0.0f;
}

void DynamicLossScaler::update() {
  if (!found_inf_.defined()) fail("loss scaler: update() before unscale()");
  at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, options_.growth_factor, options_.backoff_factor,
                         options_.growth_interval);
  found_inf_ = at::Tensor();
}

double DynamicLossScaler::scale_value() const { return scale_.item<double>(); }
int64_t DynamicLossScaler::growth_tracker() const { return growth_tracker_.item<int64_t>(); }

std::vector<std::pair<std::string, at::Tensor>> DynamicLossScaler::state() const {
  return {{"scale", scale_.cpu()}, {"growth_tracker", growth_tracker_.cpu()}};
}

void DynamicLossScaler::load_state(const std::vector<std::pair<std::string, at::Tensor>>& state) {
  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  for (const char* key : {"scale", "growth_tracker"}) {
    if (by_name.count(key) == 0 || by_name[key].numel() != 1)
      fail(std::string("loss scaler state lacks '") + key + "'");
  }
  scale_ = by_name["scale"].reshape({}).to(scale_.device(), at::kFloat).clone();
  growth_tracker_ = by_name["growth_tracker"].reshape({}).to(growth_tracker_.device(), at::kInt).clone();
}

}  // namespace qlora::train
