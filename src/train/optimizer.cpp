#include "qlora/train/optimizer.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>

#include "qlora/core/error.h"

namespace qlora::train {

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options)
    : groups_(std::move(groups)), options_(options) {
  for (const auto& g : groups_) {
    if (g.names.size() != g.params.size()) fail("AdamW: every parameter needs a name");
    std::vector<Moments> m;
    for (const auto& p : g.params) {
      m.push_back(
          {at::zeros_like(p, at::MemoryFormat::Preserve), at::zeros_like(p, at::MemoryFormat::Preserve)});
    }
    moments_.push_back(std::move(m));
  }
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  ++step_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  // The same operation order as torch.optim.adamw._single_tensor_adamw, so results match bitwise.
  const double bias_correction1 = 1.0 - std::pow(b1, static_cast<double>(step_));
  const double bias_correction2 = 1.0 - std::pow(b2, static_cast<double>(step_));
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const auto& g = groups_[gi];
    for (size_t pi = 0; pi < g.params.size(); ++pi) {
      at::Tensor p = g.params[pi];
      const at::Tensor& grad = p.grad();
      if (!grad.defined()) continue;
      auto& m = moments_[gi][pi];
      p.mul_(1.0 - lr * g.weight_decay);
      m.exp_avg.lerp_(grad, 1.0 - b1);
      m.exp_avg_sq.mul_(b2).addcmul_(grad, grad, 1.0 - b2);
      const at::Tensor denom = (m.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(options_.eps);
      p.addcdiv_(m.exp_avg, denom, -step_size);
    }
  }
}

void AdamW::zero_grad() {
  for (auto& g : groups_) {
    for (auto& p : g.params) {
      if (p.grad().defined()) p.mutable_grad() = at::Tensor();
    }
  }
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
      out.emplace_back(groups_[gi].names[pi] + ".exp_avg", moments_[gi][pi].exp_avg);
      out.emplace_back(groups_[gi].names[pi] + ".exp_avg_sq", moments_[gi][pi].exp_avg_sq);
    }
  }
  return out;
}

void AdamW::load_state(const std::vector<std::pair<std::string, at::Tensor>>& state, int64_t steps) {
  std::map<std::string, at::Tensor> by_name(state.begin(), state.end());
  at::NoGradGuard no_grad;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
      const std::string& name = groups_[gi].names[pi];
      for (auto [suffix, target] : {std::pair{".exp_avg", &moments_[gi][pi].exp_avg},
                                    std::pair{".exp_avg_sq", &moments_[gi][pi].exp_avg_sq}}) {
        const auto it = by_name.find(name + suffix);
        if (it == by_name.end()) fail("optimizer state lacks '" + name + suffix + "'");
        if (!it->second.sizes().equals(target->sizes())) {
          fail("optimizer state '" + name + suffix + "' does not have the parameter's shape");
        }
        target->copy_(it->second);
      }
    }
  }
  step_ = steps;
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> norms;
  for (const auto& p : params) {
    if (p.grad().defined()) norms.push_back(at::linalg_vector_norm(p.grad(), 2.0));
  }
  if (norms.empty()) return 0.0;
  const at::Tensor total = at::linalg_vector_norm(at::stack(norms), 2.0);
  const at::Tensor coef = at::clamp_max(max_norm / (total + 1e-6), 1.0);
  for (const auto& p : params) {
    if (p.grad().defined()) p.grad().mul_(coef.to(p.grad().scalar_type()));
  }
  return total.item<double>();
}

bool decays(const std::string& name) {
  // transformers' Trainer: no decay for biases and LayerNorm/RMSNorm weights. Norm modules are
  // named *LayerNorm / *layernorm (BERT, LLaMA), *layer_norm (T5), norm / norm_1 / norm_f (LLaMA, MPT).
  std::string lower = name;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* marker : {"bias", "layernorm", "rmsnorm", "layer_norm", ".norm", "norm."}) {
    if (lower.find(marker) != std::string::npos) return false;
  }
  return lower.rfind("norm", 0) != 0;  // a top-level "norm..." parameter
}

}  // namespace qlora::train
