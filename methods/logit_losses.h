// Pure loss functions on logits for the methods of part 1 (dkd, dist, logit standardisation), beside
// methods/losses.h. Each follows the implementation that produced the published numbers (the "reference");
// the header of each method file lists where that code differs from its paper. Logits are [B, C]; labels
// int64 [B]. tests/test_methods_reference.cpp checks every function against values computed by the
// reference code itself (tests/data/reference/*.json, with their provenance).
#pragma once
#include <torch/torch.h>

#include "methods/form.h"

namespace kd::losses {

// ---- logit standardisation (Sun et al., CVPR 2024, "Logit Standardization in Knowledge Distillation") -----
// Z-scores each row of logits: (z - mean_c z) / sigma.
//   reference (sunshangquan/logit-standardization-KD, mdistiller/distillers/KD.py `normalize`):
//     sigma = 1e-7 + std_c(z) with the Bessel-corrected (C - 1) standard deviation (torch.std's default);
//   paper (Sec. 3, Z(x; tau) = (x - mean(x)) / (tau * sigma(x))): sigma = the population (1/C) standard
//     deviation, no epsilon. (The temperature is applied afterwards by the KD loss in both.)
// Gradients flow through the mean and the standard deviation (no detach), as in the reference.
using StandardizationForm = kd::Form;
torch::Tensor standardize_logits(const torch::Tensor& logits, StandardizationForm form);

// ---- DKD (Zhao et al., CVPR 2022, "Decoupled Knowledge Distillation") ------------------------------------
// megvii-research/mdistiller a08d46f, mdistiller/distillers/DKD.py `dkd_loss`, as two unweighted terms
// (dkd_loss = alpha * tckd + beta * nckd):
//   b^X = [sum_c p^X_c g_c, sum_c p^X_c (1 - g_c)],  p^X = softmax(z_X / T), g = one-hot(label)
//   tckd = T^2 / B * sum_b sum_k b^T_k (log b^T_k - log b^S_k)              (log of the summed probabilities)
//   nckd = T^2 / B * sum_b sum_c q^T_c (log q^T_c - log q^S_c),  q^X = softmax(z_X / T - 1000 g)
// The -1000 on the true class (after dividing by T) removes it from q up to underflow: q is the paper's
// distribution over the non-target classes whenever (z_gt - z_other) / T < ~900 (fp32).
struct DkdTerms {
  torch::Tensor tckd, nckd;
};
DkdTerms dkd(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, const torch::Tensor& labels,
             double T);

// ---- DIST (Huang et al., NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher") ----------------
// hunto/image_classification_sota d9662f7 (pinned by hunto/DIST_KD), lib/models/losses/dist_kd.py `DIST`:
//   y = softmax(z / tau);  rho(a, b) = <a - mean(a), b - mean(b)> / (||a - mean(a)|| ||b - mean(b)|| + 1e-8)
//   inter = tau^2 * (1 - mean_b rho(y_s[b,:], y_t[b,:]))      (each sample's class distribution)
//   intra = tau^2 * (1 - mean_c rho(y_s[:,c], y_t[:,c]))      (each class over the batch)
// Returned unweighted (DIST's beta and gamma are the caller's weights).
struct DistTerms {
  torch::Tensor inter, intra;
};
DistTerms dist(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double tau);

}  // namespace kd::losses
