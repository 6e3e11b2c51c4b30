#include "qlora/train/optimizer.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>
#include <type_traits>

#include "qlora/core/error.h"
#include "qlora/train/adamw8bit.h"

namespace qlora::train {

AdamWOptions adamw_variant(const std::string& optim, AdamWOptions base) {
  if (optim == "adamw_torch") return base;
  if (optim == "paged_adamw_32bit") {
    base.offload_states = true;
    return base;
  }
  if (optim == "adamw_8bit" || optim == "paged_adamw_8bit") {
    base.eight_bit = true;
    base.offload_states = optim == "paged_adamw_8bit";
    return base;
  }
  fail("train.optim '" + optim +
       "' is not one of adamw_torch, paged_adamw_32bit, adamw_8bit, paged_adamw_8bit");
}

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options)
    : groups_(std::move(groups)), options_(options) {
  for (const auto& g : groups_) {
    if (g.names.size() != g.params.size()) fail("AdamW: every parameter needs a name");
    std::vector<Moments> moments;
    for (const auto& p : g.params) {
      // Offloaded states live on the host whatever the parameter's device.
      const at::TensorOptions where = options_.offload_states ? p.options().device(at::kCPU) : p.options();
      Moments m;
      if (options_.eight_bit && p.numel() >= options_.min_8bit_size) {
        const int64_t blocks = (p.numel() + kBnbBlockSize - 1) / kBnbBlockSize;
        m.state1 = at::zeros(p.sizes(), where.dtype(at::kByte));
        m.state2 = at::zeros(p.sizes(), where.dtype(at::kByte));
        m.absmax1 = at::zeros({blocks}, where.dtype(at::kFloat));
        m.absmax2 = at::zeros({blocks}, where.dtype(at::kFloat));
      } else {
        m.exp_avg = at::zeros(p.sizes(), where);
        m.exp_avg_sq = at::zeros(p.sizes(), where);
      }
      moments.push_back(std::move(m));
    }
    moments_.push_back(std::move(moments));
  }
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  ++step_;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    auto& g = groups_[gi];
    for (size_t pi = 0; pi < g.params.size(); ++pi) {
      at::Tensor& p = g.params[pi];
      const at::Tensor& grad = p.grad();
      if (!grad.defined()) continue;
      Moments& stored = moments_[gi][pi];
      // Paged: bring this parameter's states to its device for the update, then write them back.
      const bool stream = options_.offload_states && p.device() != at::Device(at::kCPU);
      Moments m = stored;
      if (stream) {
        for (at::Tensor* t : {&m.exp_avg, &m.exp_avg_sq, &m.state1, &m.state2, &m.absmax1, &m.absmax2}) {
          if (t->defined()) *t = t->to(p.device(), /*non_blocking=*/false, /*copy=*/true);
        }
      }
      if (m.quantized()) {
        step_8bit(p, grad, m, lr, g.weight_decay);
      } else {
        step_32bit(p, grad, m, lr, g.weight_decay);
      }
      if (stream || m.quantized()) {  // 8-bit updates produce new code tensors
        for (auto [from, to] : {std::pair{&m.exp_avg, &stored.exp_avg},
                                {&m.exp_avg_sq, &stored.exp_avg_sq},
                                {&m.state1, &stored.state1},
                                {&m.state2, &stored.state2},
                                {&m.absmax1, &stored.absmax1},
                                {&m.absmax2, &stored.absmax2}}) {
          if (from->defined() && !from->is_same(*to)) to->copy_(*from);
        }
      }
    }
  }
}

void AdamW::step_32bit(at::Tensor& p, const at::Tensor& grad, Moments& m, double lr, double weight_decay) {
  if (options_.eight_bit) {  // bnb keeps small parameters on its own 32-bit kernel
    adam_update_32bit_bnb(p, grad, m.exp_avg, m.exp_avg_sq,
                          {lr, options_.beta1, options_.beta2, options_.eps, weight_decay, step_});
    return;
  }
  const double b1 = options_.beta1, b2 = options_.beta2;
  // The same operation order as torch.optim.adamw._single_tensor_adamw, so results match bitwise.
  const double bias_correction1 = 1.0 - std::pow(b1, static_cast<double>(step_));
  const double bias_correction2 = 1.0 - std::pow(b2, static_cast<double>(step_));
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  p.mul_(1.0 - lr * weight_decay);
  m.exp_avg.lerp_(grad, 1.0 - b1);
  m.exp_avg_sq.mul_(b2).addcmul_(grad, grad, 1.0 - b2);
  const at::Tensor denom = (m.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(options_.eps);
  p.addcdiv_(m.exp_avg, denom, -step_size);
}

void AdamW::step_8bit(at::Tensor& p, const at::Tensor& grad, Moments& m, double lr, double weight_decay) {
  BlockwiseCodes s1{m.state1, m.absmax1}, s2{m.state2, m.absmax2};
  adam_update_8bit_blockwise(p, grad, s1, s2,
                             {lr, options_.beta1, options_.beta2, options_.eps, weight_decay, step_});
  m.state1 = s1.codes;
  m.absmax1 = s1.absmax;
  m.state2 = s2.codes;
  m.absmax2 = s2.absmax;
}

void AdamW::zero_grad() {
  for (auto& g : groups_) {
    for (auto& p : g.params) {
      if (p.grad().defined()) p.mutable_grad() = at::Tensor();
    }
  }
}

namespace {
// (suffix, slot) of each state tensor of one parameter, in checkpoint order.
template <typename M>
auto state_slots(M& m) {
  using T = std::conditional_t<std::is_const_v<M>, const at::Tensor*, at::Tensor*>;
  std::vector<std::pair<std::string, T>> out;
  if (m.quantized()) {
    out = {
        {".state1", &m.state1}, {".state2", &m.state2}, {".absmax1", &m.absmax1}, {".absmax2", &m.absmax2}};
  } else {
    out = {{".exp_avg", &m.exp_avg}, {".exp_avg_sq", &m.exp_avg_sq}};
  }
  return out;
}
}  // namespace

std::vector<std::pair<std::string, at::Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (size_t pi = 0; pi < groups_[gi].params.size(); ++pi) {
      for (const auto& [suffix, slot] : state_slots(moments_[gi][pi])) {
        out.emplace_back(groups_[gi].names[pi] + suffix, *slot);
      }
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
      for (auto [suffix, target] : state_slots(moments_[gi][pi])) {
        const auto it = by_name.find(name + suffix);
        if (it == by_name.end()) {
          fail("optimizer state lacks '" + name + suffix +
               "' (was the checkpoint written with another train.optim?)");
        }
        if (!it->second.sizes().equals(target->sizes()) ||
            it->second.scalar_type() != target->scalar_type()) {
          fail("optimizer state '" + name + suffix + "' does not have the expected shape and dtype");
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

std::vector<ParamGroup> decay_groups(const std::vector<std::pair<std::string, at::Tensor>>& named,
                                     double weight_decay) {
  ParamGroup decay, plain;
  decay.weight_decay = weight_decay;
  for (const auto& [name, tensor] : named) {
    ParamGroup& g = decays(name) ? decay : plain;
    g.names.push_back(name);
    g.params.push_back(tensor);
  }
  return {decay, plain};
}

}  // namespace qlora::train
