// The updater (harness/updater.h), the one place an optimizer is written: its eager step equals LibTorch's own
// torch::optim::SGD and AdamW BIT FOR BIT (so moving the trainer onto it changed no number of any sweep); its
// tensor form (the one a CUDA graph captures, learning rates read from device tensors) and its K-block form (K fused
// students, each with its own learning rate and weight decay) agree with it to float rounding; clipping scales each
// block by min(1, clip / (norm + 1e-6)).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "harness/updater.h"

namespace {

std::vector<torch::Tensor> make_params(uint64_t seed, int64_t blocks = 1) {
  torch::manual_seed(seed);
  return {torch::randn({blocks * 3, 4}).requires_grad_(true), torch::randn({blocks * 5}).requires_grad_(true),
          torch::randn({blocks, 2, 3, 3}).requires_grad_(true)};
}

std::vector<torch::Tensor> clone_params(const std::vector<torch::Tensor>& ps) {
  std::vector<torch::Tensor> out;
  for (const auto& p : ps) out.push_back(p.detach().clone().requires_grad_(true));
  return out;
}

// The same pseudo-random gradients on both sets at step s.
void set_grads(std::vector<torch::Tensor>& a, std::vector<torch::Tensor>& b, int step) {
  torch::manual_seed(1000 + step);
  for (size_t i = 0; i < a.size(); ++i) {
    auto g = torch::randn_like(a[i]);
    a[i].mutable_grad() = g.clone();
    b[i].mutable_grad() = g.clone();
  }
}

kd::Recipe recipe(const std::string& optimizer, double wd, bool nesterov, double momentum = 0.9) {
  kd::Recipe r;
  r.optimizer = optimizer;
  r.weight_decay = wd;
  r.nesterov = nesterov;
  r.momentum = momentum;
  r.lr = 0.1;
  return r;
}

const double kRates[] = {0.1, 0.07, 0.05, 0.02, 0.01, 0.003};

// LibTorch's own optimizers, as the trainer used them before the updater (the reference of the first test).
std::unique_ptr<torch::optim::Optimizer> libtorch_optimizer(const kd::Recipe& r, std::vector<torch::Tensor> params) {
  if (r.optimizer == "adamw")
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(r.lr).betas({r.beta1, r.beta2}).weight_decay(r.weight_decay));
  return std::make_unique<torch::optim::SGD>(
      params, torch::optim::SGDOptions(r.lr).momentum(r.momentum).nesterov(r.nesterov).weight_decay(r.weight_decay));
}

void set_lr(torch::optim::Optimizer& opt, double lr) {
  for (auto& g : opt.param_groups()) g.options().set_lr(lr);
}

TEST(Updater, EagerStepEqualsLibTorchsOptimizersBitForBit) {
  for (const auto& r : {recipe("sgd", 5e-4, true), recipe("sgd", 0, false), recipe("sgd", 1e-3, false, 0.0),
                        recipe("adamw", 0.05, false), recipe("adamw", 0, false)}) {
    auto mine = make_params(7), theirs = clone_params(mine);
    kd::Updater up(mine, r);
    auto opt = libtorch_optimizer(r, theirs);
    for (int s = 0; s < 6; ++s) {
      set_grads(mine, theirs, s);
      up.step(kRates[s]);
      set_lr(*opt, kRates[s]);
      opt->step();
      for (size_t i = 0; i < mine.size(); ++i)
        ASSERT_TRUE(torch::equal(mine[i], theirs[i]))
            << r.optimizer << " wd " << r.weight_decay << " nesterov " << r.nesterov << " step " << s << " param "
            << i << ": max diff " << (mine[i] - theirs[i]).abs().max().item<double>();
    }
  }
}

TEST(Updater, TheCapturableTensorFormAgreesWithTheEagerStep) {
  for (const auto& r : {recipe("sgd", 5e-4, true), recipe("adamw", 0.05, false)}) {
    auto eager = make_params(11), tensor = clone_params(eager);
    kd::Updater a(eager, r), b(tensor, r);
    auto lr = torch::zeros({1, 1});
    for (int s = 0; s < 6; ++s) {
      set_grads(eager, tensor, s);
      a.step(kRates[s]);
      lr.fill_(kRates[s]);  // refilled in place, as before a graph's replay
      b.step(lr);
      for (size_t i = 0; i < eager.size(); ++i)
        EXPECT_LE((eager[i] - tensor[i]).abs().max().item<double>(), 1e-6) << r.optimizer << " step " << s;
    }
    // And it is not the same as doing nothing: the parameters moved.
    EXPECT_GT((tensor[0] - make_params(11)[0]).abs().max().item<double>(), 1e-3);
  }
}

TEST(Updater, BlocksUpdateLikeSeparateStudentsEachWithItsOwnRates) {
  const int64_t K = 3;
  for (const char* optimizer : {"sgd", "adamw"}) {
    std::vector<kd::Recipe> rs{recipe(optimizer, 5e-4, true), recipe(optimizer, 0, true), recipe(optimizer, 1e-2, true)};
    auto fused = make_params(3, K);
    std::vector<std::vector<torch::Tensor>> alone(K);
    for (int64_t k = 0; k < K; ++k)
      for (const auto& p : fused) alone[k].push_back(p.detach().view({K, -1})[k].clone().requires_grad_(true));
    kd::Updater f(fused, rs);
    std::vector<std::unique_ptr<kd::Updater>> u;
    for (int64_t k = 0; k < K; ++k) u.push_back(std::make_unique<kd::Updater>(alone[k], rs[k]));
    for (int s = 0; s < 5; ++s) {
      torch::manual_seed(50 + s);
      std::vector<double> lr;
      for (auto& p : fused) p.mutable_grad() = torch::randn_like(p);
      for (int64_t k = 0; k < K; ++k) {
        for (size_t i = 0; i < fused.size(); ++i) alone[k][i].mutable_grad() = fused[i].grad().view({K, -1})[k].clone();
        lr.push_back(kRates[s] * static_cast<double>(k + 1));
        u[k]->step(lr.back());
      }
      f.step(lr);
      for (int64_t k = 0; k < K; ++k)
        for (size_t i = 0; i < fused.size(); ++i)
          EXPECT_LE((fused[i].detach().view({K, -1})[k] - alone[k][i].detach()).abs().max().item<double>(), 1e-6)
              << optimizer << " block " << k << " step " << s;
    }
  }
}

TEST(Updater, ClippingScalesEachBlockToItsOwnNorm) {
  const int64_t K = 2;
  kd::Recipe a = recipe("sgd", 0, false), b = a;
  a.grad_clip = 1.0;  // block 0 clips to norm 1; block 1 does not clip
  auto ps = make_params(5, K);
  for (auto& p : ps) p.mutable_grad() = torch::full_like(p, 0.5);
  kd::Updater up(ps, {a, b});
  auto norm = up.grad_norm2().sqrt();
  // By hand: each block has 12 + 5 + 18 = 35 entries of 0.5: norm sqrt(35) / 2.
  EXPECT_NEAR(norm[0].item<double>(), std::sqrt(35.0) / 2, 1e-12);
  auto coef = up.clip(norm);
  EXPECT_NEAR(coef[0].item<double>(), 1.0 / (std::sqrt(35.0) / 2 + 1e-6), 1e-7);
  EXPECT_EQ(coef[1].item<double>(), 1.0);
  auto after = up.grad_norm2().sqrt();
  EXPECT_NEAR(after[0].item<double>(), 1.0, 1e-5);
  EXPECT_NEAR(after[1].item<double>(), std::sqrt(35.0) / 2, 1e-9);
}

}  // namespace
