// Pure loss functions of the feature methods VID, AB, FSP, FT, CRD, ReviewKD and OFD (methods/vid.cpp ...
// methods/ofd.cpp are thin classes over them; tests call them directly). Each states the reference code it
// reproduces (repository, commit, file, function); the methods' headers list where the papers differ.
// Feature maps are [B, C, H, W].
//   RepDistiller      HobbitLong/RepDistiller @ b84f547c5db6a35318d4671d7d5c4de74c822403
//   ReviewKD          dvlab-research/ReviewKD @ cede6ea6387ae9b6127de0e561507177bf19c11e
//   OFD               clovaai/overhaul-distillation @ 76344a84a7ce23c894f41a2e05b866c9b73fd85a
#pragma once
#include <torch/torch.h>

#include <utility>
#include <vector>

namespace kd::losses {

// RepDistiller's spatial alignment (VID.py, FSP.py, FT.py): compares the heights only; the map with the larger
// height is adaptive-average-pooled to (h, h), h the smaller height (square output). Equal heights: unchanged.
std::pair<torch::Tensor, torch::Tensor> pool_larger_height(const torch::Tensor& a, const torch::Tensor& b);

// ---- VID (RepDistiller distiller_zoo/VID.py, VIDLoss.forward) --------------------------------------------
// The predicted variance per teacher channel: softplus written out, log(1 + exp(log_scale)) + eps, [C].
torch::Tensor vid_variance(const torch::Tensor& log_scale, double eps);
// 0.5 * ((mu - t)^2 / var + log var) with var [C] broadcast over [B, C, H, W]; reduced by the mean over
// every element (reference) or, `per_sample_sum`, summed over C, H, W and averaged over the batch (the
// paper's -log q(t|s) without its constant).
torch::Tensor vid_nll(const torch::Tensor& mu, const torch::Tensor& target, const torch::Tensor& variance,
                      bool per_sample_sum = false);

// ---- AB (RepDistiller distiller_zoo/AB.py, ABLoss.criterion_alternative_l2) --------------------------------
// sum( (s + m)^2 [s > -m and t <= 0] + (s - m)^2 [s <= m and t > 0] ) over every element (a scalar).
torch::Tensor ab_alternative_l2(const torch::Tensor& source, const torch::Tensor& target, double margin);
// ABLoss(n).forward summed: sum_i 2^(i - n + 1) * ab_alternative_l2(s_i, t_i, m) / B / 1000 * 3.
torch::Tensor ab_loss(const std::vector<torch::Tensor>& sources, const std::vector<torch::Tensor>& targets,
                      double margin);

// ---- FSP (RepDistiller distiller_zoo/FSP.py, FSP.compute_fsp / compute_loss) -----------------------------------
// The FSP matrix of two maps: the larger (by height) is pooled to the smaller; [B, C_top, C_bottom] with
// entries mean_{hw}(top[b, j, hw] * bottom[b, i, hw]).
torch::Tensor fsp_matrix(const torch::Tensor& bottom, const torch::Tensor& top);
// Sum over consecutive pairs (g[i], g[i+1]) of mean((G_s - G_t)^2) (reference), or with `paper_sum` the
// squared Frobenius norm per sample averaged over the batch (Yim et al. 2017, Eq. 2, all lambda = 1).
torch::Tensor fsp_loss(const std::vector<torch::Tensor>& student, const std::vector<torch::Tensor>& teacher,
                       bool paper_sum = false);

// ---- FT (RepDistiller distiller_zoo/FT.py, FactorTransfer) ----------------------------------------------------
// factor(f) = L2-normalise( mean_c f^p1 ) per sample, [B, H*W] (F.normalize: eps 1e-12).
torch::Tensor ft_factor(const torch::Tensor& f, double p1);
// The larger factor map pooled (pool_larger_height), then mean over B*H*W of |fs - ft| (p2 = 1) or of
// (fs - ft)^p2. `paper` instead flattens each factor tensor whole (C*H*W), L2-normalises it, and averages the
// per-sample p2-norm of the difference over the batch (Kim et al. 2018, Eq. 3).
torch::Tensor ft_loss(const torch::Tensor& factor_s, const torch::Tensor& factor_t, double p1, double p2,
                      bool paper = false);

// ---- CRD (RepDistiller crd/criterion.py ContrastLoss, crd/memory.py ContrastMemory) -----------------------------
// x: [B, K+1] scores exp(v.w / T) / Z, positive in column 0. With Pn = 1/n_data, m = K, eps = 1e-7:
//   -( sum_b log(x0 / (x0 + m Pn + eps)) + sum_{b,k} log(m Pn / (xk + m Pn + eps)) ) / B.
torch::Tensor crd_contrast_loss(const torch::Tensor& scores, int64_t n_data);
// Embed's Normalize: x / ||x||_2 per row, without an eps.
torch::Tensor crd_l2_normalize(const torch::Tensor& x);

// ---- ReviewKD (ReviewKD CIFAR-100/model/reviewkd.py, hcl) -------------------------------------------------------
// One level: (mse(fs, ft) + sum_{l in 4,2,1; l < h} c_l mse(pool_l fs, pool_l ft)) / (1 + sum c_l), where c
// halves at each pyramid level actually used (1/2, 1/4, 1/8) and mse is the mean squared error.
torch::Tensor hcl_level(const torch::Tensor& fs, const torch::Tensor& ft);
// hcl: the sum of hcl_level over the pairs.
torch::Tensor hcl(const std::vector<torch::Tensor>& fs, const std::vector<torch::Tensor>& ft);

// ---- OFD (overhaul-distillation CIFAR-100/distiller.py) ---------------------------------------------------------
// get_margin_from_BN: per channel, s = |gamma|, m = beta; if Phi(-m/s) > 0.001 the margin is
// m - s phi(m/s) / Phi(-m/s) (= E[x | x < 0] for x ~ N(m, s^2)), else -3 s. Computed in double, [C] float.
torch::Tensor ofd_margin(const torch::Tensor& gamma, const torch::Tensor& beta);
// distillation_loss: t' = max(t, margin [C]); sum of (s - t')^2 where s > t' or t' > 0 (partial L2).
torch::Tensor ofd_partial_l2(const torch::Tensor& source, const torch::Tensor& target, const torch::Tensor& margin);

}  // namespace kd::losses
