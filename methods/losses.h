// Pure loss functions of tensors: the functional form beside each method (tests and benchmarks
// call them directly). Every formula states its source. Logits are [B, C]; feature maps [B, C, H, W].
#pragma once
#include <torch/torch.h>

#include <utility>
#include <vector>

namespace kd::losses {

// ---- Hinton et al. 2015 (logit KD) ---------------------------------------------------------------
// "Distilling the Knowledge in a Neural Network", Sec. 2: soft targets q_i = exp(z_i/T) / sum_j exp(z_j/T).
//   soft_kl = T^2 * (1/B) sum_b sum_c p_t[b,c] (log p_t[b,c] - log p_s[b,c]),  p = softmax(logits / T),
// i.e. KL(teacher || student) summed over classes and averaged over the batch ("batchmean"). The T^2
// (end of Sec. 2) keeps the gradient's scale independent of T: d soft_kl / d s[b,c] = T (p_s - p_t)[b,c] / B.
torch::Tensor soft_kl(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double T);
// The same with the teacher's distribution given directly (rows sum to 1; zeros allowed: 0 log 0 = 0),
// optionally with per-sample weights w [B]: T^2 * (1/B) sum_b w_b KL_b.
torch::Tensor soft_kl_to_probs(const torch::Tensor& student_logits, const torch::Tensor& teacher_probs, double T,
                               const torch::Tensor& sample_weights = {});

// ---- feature maps ------------------------------------------------------------------------------
// Brings two feature maps to a common spatial size: whichever is larger along a dimension is reduced
// by adaptive average pooling to the smaller one's size (so a larger map is summarised, never
// sub-sampled or invented by interpolation). Equal sizes are returned unchanged.
std::pair<torch::Tensor, torch::Tensor> pool_to_common_size(const torch::Tensor& a, const torch::Tensor& b);

// FitNets hint (Romero et al. 2015, Sec. 2.2, Eq. 3: L_HT = 1/2 ||u_h - r(v_g)||^2 per example),
// implemented as the mean squared error over every element:
//   hint_mse = (1/(B*N)) sum (r(v_g) - u_h)^2 = (2/N) * (1/B) sum_b L_HT(b),  N = elements per example
// (C*H*W). The 2/N factor is a constant that the hint weight absorbs.
torch::Tensor hint_mse(const torch::Tensor& adapted_student, const torch::Tensor& teacher);

// ---- attention transfer (Zagoruyko & Komodakis 2017) ---------------------------------------------
// Sec. 3.1: activation-based spatial attention F^p_sum(A) = sum_c |A_c|^p; we use the channel MEAN
// (= sum / C, which the normalisation cancels), flattened per sample and L2-normalised:
//   Q(A) = vec(mean_c |A_c|^p) / ||vec(mean_c |A_c|^p)||_2   -> [B, H*W].
torch::Tensor attention_map(const torch::Tensor& feature, double p);
// One tap pair: mean over batch and positions of (Q_s - Q_t)^2 (the authors' code and RepDistiller;
// Eq. 2 of the paper writes beta/2 * ||Q_s/||Q_s|| - Q_t/||Q_t|| ||_p summed over pairs). When the
// spatial sizes differ:
//   Pool (default; RepDistiller b84f547 distiller_zoo/AT.py `at_loss`): the larger RAW feature map is
//     adaptive-average-pooled to the smaller one's size (pool_to_common_size) BEFORE the attention maps;
//   Interpolate: the student's 2-D map mean_c |A_c|^p is resized to the teacher's size by bilinear
//     interpolation (align_corners = false) before flattening and normalisation.
enum class AttentionResize { Pool, Interpolate };
torch::Tensor attention_loss(const torch::Tensor& student_feature, const torch::Tensor& teacher_feature, double p,
                             AttentionResize resize = AttentionResize::Pool);

// ---- multi-teacher aggregations ------------------------------------------------------------------
// sum_k w_k softmax(t_k / T) for fixed weights w (which should sum to 1; "average" is w_k = 1/K,
// as in You et al. 2017, "Learning from Multiple Teacher Networks", KDD).
torch::Tensor mix_teacher_probs(const std::vector<torch::Tensor>& teacher_logits, const std::vector<double>& weights,
                                double T);
// CA-MKD (Zhang, Chen & Wang 2022, "Confidence-Aware Multi-Teacher Knowledge Distillation", ICASSP,
// Sec. 2.1, Eq. 1-2): per sample b, L_k = CE(t_k[b], y_b) (teacher k's cross-entropy on the true label,
// no temperature) and w_k = (1 - exp(L_k) / sum_j exp(L_j)) / (K - 1). Returns [K, B]; columns sum to 1.
torch::Tensor confidence_weights(const std::vector<torch::Tensor>& teacher_logits, const torch::Tensor& labels);
// CA-MKD's KD term (Eq. 3), L_KD = sum_k w_k KL_T(t_k, s), per sample, then batch mean:
//   T^2 * (1/B) sum_b sum_k w_k[b] KL(softmax(t_k[b]/T) || softmax(s[b]/T)).
// (The authors' code additionally divides by K; that is a constant factor on alpha, not applied here.)
torch::Tensor confidence_kd(const torch::Tensor& student_logits, const std::vector<torch::Tensor>& teacher_logits,
                            const torch::Tensor& labels, double T);

}  // namespace kd::losses
