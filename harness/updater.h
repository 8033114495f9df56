// The updater: gradient clipping and the optimizer step (SGD, AdamW), the one place an optimizer is written.
//
// It updates a set of parameters that are K blocks along dim 0: K = 1 for a run's own model (and a method's own
// modules), K students for a horizontally fused model (each block one student, with its own learning rate, weight
// decay and clipping norm). Every execution of the step engine uses it (harness/step.h): the laned and fused eager
// steps and the static step that CUDA graphs capture.
//
// Hyperparameters that change from step to step come in one of two forms:
//   - host doubles (eager steps): for K = 1 the same ATen calls, in the same order and with the same scalars, as
//     LibTorch's own torch::optim::SGD and AdamW, so a run's numbers are LibTorch's bit for bit
//     (tests/test_harness_updater.cpp);
//   - device tensors ([K, 1]: learning rate, weight decay, clipping norm; AdamW's step count on the device too): a
//     captured step reads them at every replay, and K students differ per block.
// Adding an optimizer is adding its rule in updater.cpp (both forms) and its name to Recipe.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "harness/recipe.h"

namespace kd {

class Updater {
 public:
  // `recipes`: one per block (K = recipes.size()); they must agree on the optimizer and its momentum / betas, and
  // give each block its weight decay and clipping norm. `params`: every tensor K blocks along dim 0.
  Updater(std::vector<torch::Tensor> params, const std::vector<Recipe>& recipes);
  Updater(std::vector<torch::Tensor> params, const Recipe& recipe) : Updater(std::move(params), std::vector<Recipe>{recipe}) {}

  const std::vector<torch::Tensor>& params() const { return params_; }
  int64_t blocks() const { return blocks_; }
  bool clips() const { return any_clip_; }
  // Sets every gradient to none (as zero_grad() does in LibTorch 2.x).
  void zero_grad();
  // Per-block squared L2 norm of the gradients, [K] doubles on the parameters' device (0 for a block without any).
  torch::Tensor grad_norm2() const;
  // Scales block k's gradients by min(1, clip_k / (norm_k + 1e-6)) where clip_k > 0 (`norm`: [K] doubles on the
  // device); the same coefficients are returned ([K] floats, 1 where a block does not clip) for other parameters of
  // the same runs (a fused student's method modules).
  torch::Tensor clip(const torch::Tensor& norm) const;
  // Scales the gradients of `params` (one block) by coef (a 0-d tensor).
  static void scale_grads(const std::vector<torch::Tensor>& params, const torch::Tensor& coef);

  // The optimizer step with host learning rates, one per block (eager). A block whose rate is 0 does not move.
  void step(const std::vector<double>& lr);
  void step(double lr) { step(std::vector<double>{lr}); }
  // The optimizer step with the learning rates in a [K, 1] tensor on the parameters' device (capturable).
  void step(const torch::Tensor& lr);

  // The recipe's optimizer names this class implements.
  static bool implements(const std::string& optimizer) { return optimizer == "sgd" || optimizer == "adamw"; }

 private:
  void sgd_scalar(double lr);
  void sgd_blocks(const torch::Tensor& lr);
  void adamw_scalar(double lr);
  void adamw_blocks(const torch::Tensor& lr);
  torch::Tensor column(const std::vector<double>& v) const;

  std::vector<torch::Tensor> params_;
  int64_t blocks_ = 1;
  std::string optimizer_;
  double momentum_ = 0, beta1_ = 0.9, beta2_ = 0.999, eps_ = 1e-8;
  bool nesterov_ = false, any_wd_ = false, any_clip_ = false;
  std::vector<double> wd_, clip_;
  torch::Tensor wd_col_, clip_vec_;                 // [K, 1] / [K] on the device
  std::vector<torch::Tensor> buf_, exp_avg_, exp_avg_sq_;  // per parameter; undefined until its first step
  int64_t steps_ = 0;                              // AdamW's step count (host)
  torch::Tensor steps_t_;                          // AdamW's step count on the device (the capturable form)
};

}  // namespace kd
