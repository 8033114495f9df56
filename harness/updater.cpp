#include "harness/updater.h"

#include <cmath>
#include <stdexcept>

namespace kd {

Updater::Updater(std::vector<torch::Tensor> params, const std::vector<Recipe>& recipes) : params_(std::move(params)) {
  if (recipes.empty()) throw std::logic_error("an updater needs at least one block");
  blocks_ = static_cast<int64_t>(recipes.size());
  const Recipe& r = recipes.front();
  optimizer_ = r.optimizer;
  if (!implements(optimizer_)) throw std::logic_error("no updater rule for optimizer '" + optimizer_ + "'");
  momentum_ = r.momentum;
  nesterov_ = r.nesterov;
  beta1_ = r.beta1;
  beta2_ = r.beta2;
  for (const auto& b : recipes) {
    if (b.optimizer != optimizer_ || b.momentum != momentum_ || b.nesterov != nesterov_ || b.beta1 != beta1_ ||
        b.beta2 != beta2_)
      throw std::logic_error("the blocks of one updater must share the optimizer, its momentum and betas");
    wd_.push_back(b.weight_decay);
    clip_.push_back(b.grad_clip);
    any_wd_ |= b.weight_decay != 0;
    any_clip_ |= b.grad_clip > 0;
  }
  if (!params_.empty()) {
    wd_col_ = column(wd_);
    clip_vec_ = torch::tensor(clip_, torch::kDouble).to(params_.front().device());
  }
  buf_.resize(params_.size());
  exp_avg_.resize(params_.size());
  exp_avg_sq_.resize(params_.size());
}

namespace {
// A parameter (or its gradient) as K blocks: dim 0 split into [K, n / K]. A view whatever the memory format (a
// channels-last weight cannot be viewed as [K, -1], but its outermost dimension can always be split).
torch::Tensor blocks_of(const torch::Tensor& t, int64_t K) {
  return t.unflatten(0, {K, t.size(0) / K});
}
// A [K, 1] column broadcast against blocks_of(t): [K, 1, ..., 1].
torch::Tensor against(const torch::Tensor& column, const torch::Tensor& blocks) {
  std::vector<int64_t> shape(static_cast<size_t>(blocks.dim()), 1);
  shape[0] = column.size(0);
  return column.reshape(shape);
}
}  // namespace

torch::Tensor Updater::column(const std::vector<double>& v) const {
  const auto& p = params_.front();
  return torch::tensor(v, torch::kDouble).to(torch::TensorOptions().dtype(p.scalar_type()).device(p.device())).view(
      {static_cast<int64_t>(v.size()), 1});
}

void Updater::zero_grad() {
  for (auto& p : params_) p.mutable_grad() = torch::Tensor();
}

torch::Tensor Updater::grad_norm2() const {
  torch::NoGradGuard ng;
  auto opts = torch::TensorOptions().dtype(torch::kDouble).device(params_.empty() ? torch::kCPU : params_.front().device());
  torch::Tensor n2 = torch::zeros({blocks_}, opts);
  for (const auto& p : params_)
    if (p.grad().defined()) n2 = n2 + blocks_of(p.grad(), blocks_).to(torch::kDouble).pow(2).flatten(1).sum(1);
  return n2;
}

torch::Tensor Updater::clip(const torch::Tensor& norm) const {
  torch::NoGradGuard ng;
  const auto& clip = clip_vec_.defined() ? clip_vec_ : torch::tensor(clip_, torch::kDouble).to(norm.device());
  auto coef = torch::where(clip > 0, (clip / (norm + 1e-6)).clamp_max(1.0), torch::ones_like(clip)).to(torch::kFloat);
  for (const auto& p : params_)
    if (p.grad().defined()) {
      auto g = blocks_of(p.grad(), blocks_);
      g.mul_(against(coef.view({blocks_, 1}).to(g.scalar_type()), g));
    }
  return coef;
}

void Updater::scale_grads(const std::vector<torch::Tensor>& params, const torch::Tensor& coef) {
  torch::NoGradGuard ng;
  for (const auto& p : params)
    if (p.grad().defined()) p.grad().mul_(coef.to(p.grad().scalar_type()));
}

void Updater::step(const std::vector<double>& lr) {
  if (params_.empty()) return;
  if (static_cast<int64_t>(lr.size()) != blocks_) throw std::logic_error("one learning rate per block is needed");
  if (blocks_ == 1) {
    if (optimizer_ == "adamw")
      adamw_scalar(lr[0]);
    else
      sgd_scalar(lr[0]);
    return;
  }
  step(column(lr));
}

void Updater::step(const torch::Tensor& lr) {
  if (params_.empty()) return;
  if (optimizer_ == "adamw")
    adamw_blocks(lr);
  else
    sgd_blocks(lr);
}

// ---- SGD ---------------------------------------------------------------------------------------------------------
// PyTorch's SGD: d = g + wd p; the momentum buffer is d at the first step, then mu buf + d; Nesterov d + mu buf,
// else buf; p -= lr d.
void Updater::sgd_scalar(double lr) {
  torch::NoGradGuard ng;
  const double wd = wd_[0];
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    if (!p.grad().defined()) continue;
    auto d = p.grad().data();
    if (wd != 0) d = d.add(p.data(), wd);
    if (momentum_ != 0) {
      auto& buf = buf_[i];
      if (!buf.defined()) {
        buf = torch::clone(d).detach();
      } else {
        buf.mul_(momentum_).add_(d, 1.0);
      }
      d = nesterov_ ? d.add(buf, momentum_) : buf;
    }
    p.data().add_(d, -1 * lr);
  }
}

void Updater::sgd_blocks(const torch::Tensor& lr) {
  torch::NoGradGuard ng;
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    if (!p.grad().defined()) continue;
    auto pv = blocks_of(p, blocks_);
    auto d = blocks_of(p.grad(), blocks_);
    if (any_wd_) d = d + against(wd_col_, pv) * pv;
    if (momentum_ != 0) {
      auto& buf = buf_[i];
      if (!buf.defined()) {
        buf = d.clone();
      } else {
        buf.mul_(momentum_).add_(d);
      }
      d = nesterov_ ? d.add(buf, momentum_) : buf;
    }
    pv.sub_(against(lr, pv) * d);
  }
}

// ---- AdamW -------------------------------------------------------------------------------------------------------
// PyTorch's AdamW: p *= 1 - lr wd (decoupled decay); m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). One step count for all parameters (every parameter
// of a stage has a gradient at every step).
void Updater::adamw_scalar(double lr) {
  torch::NoGradGuard ng;
  const double wd = wd_[0];
  bool counted = false;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    if (!p.grad().defined()) continue;
    if (!counted) {
      ++steps_;
      counted = true;
    }
    const auto& grad = p.grad();
    if (wd != 0) p.mul_(1 - lr * wd);
    auto& m = exp_avg_[i];
    auto& v = exp_avg_sq_[i];
    if (!m.defined()) {
      m = torch::zeros_like(p, at::MemoryFormat::Preserve);
      v = torch::zeros_like(p, at::MemoryFormat::Preserve);
    }
    const double bc1 = 1 - std::pow(beta1_, static_cast<double>(steps_));
    const double bc2 = 1 - std::pow(beta2_, static_cast<double>(steps_));
    m.mul_(beta1_).add_(grad, 1 - beta1_);
    v.mul_(beta2_).addcmul_(grad, grad, 1 - beta2_);
    auto denom = (v.sqrt() / std::sqrt(bc2)).add_(eps_);
    p.addcdiv_(m, denom, -(lr / bc1));
  }
}

void Updater::adamw_blocks(const torch::Tensor& lr) {
  torch::NoGradGuard ng;
  const auto& p0 = params_.front();
  if (!steps_t_.defined()) steps_t_ = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(p0.device()));
  steps_t_.add_(1);
  const auto dtype = p0.scalar_type();
  auto bc1 = (1 - torch::pow(beta1_, steps_t_)).to(dtype);
  auto bc2_sqrt = (1 - torch::pow(beta2_, steps_t_)).sqrt().to(dtype);
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& p = params_[i];
    if (!p.grad().defined()) continue;
    auto pv = blocks_of(p, blocks_);
    auto g = blocks_of(p.grad(), blocks_);
    auto lr_b = against(lr, pv);
    if (any_wd_) pv.mul_(1 - lr_b * against(wd_col_, pv));
    auto& m = exp_avg_[i];
    auto& v = exp_avg_sq_[i];
    if (!m.defined()) {
      m = torch::zeros_like(pv);
      v = torch::zeros_like(pv);
    }
    m.mul_(beta1_).add_(g, 1 - beta1_);
    v.mul_(beta2_).addcmul_(g, g, 1 - beta2_);
    auto denom = (v.sqrt() / bc2_sqrt).add_(eps_);
    pv.sub_((lr_b / bc1) * m / denom);
  }
}

}  // namespace kd
