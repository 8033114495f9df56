// Pure loss functions of tensors: the functional form beside each method (tests and benchmarks
// call them directly). Every formula states its source.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace kd::losses {

// Hinton, Vinyals & Dean 2015, Sec. 2: T^2 * KL(softmax(t/T) || softmax(s/T)), summed over classes
// and averaged over the batch ("batchmean"). The T^2 keeps the gradient scale independent of T.
torch::Tensor soft_kl(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double T);
// The same with the teacher's softened distribution given directly (rows sum to 1), optionally with
// per-sample weights w [B] (then sum_b w_b KL_b / B).
torch::Tensor soft_kl_to_probs(const torch::Tensor& student_logits, const torch::Tensor& teacher_probs, double T,
                               const torch::Tensor& sample_weights = {});

// Resizes a feature map [B,C,H,W] to (h, w): adaptive average pooling when shrinking, bilinear when
// growing (so a larger map is summarised, never sub-sampled).
torch::Tensor align_spatial(const torch::Tensor& x, int64_t h, int64_t w);

// FitNets hint (Romero et al. 2015, Eq. 3, L_HT = 1/2 ||u_h - r(v_g)||^2): implemented as the mean
// squared error over every element, mean((r(v_g) - u_h)^2) = (2 / (C*H*W)) * batch-mean of L_HT.
torch::Tensor hint_mse(const torch::Tensor& adapted_student, const torch::Tensor& teacher);

// Attention transfer (Zagoruyko & Komodakis 2017, Sec. 3.1 and Eq. 2): Q(A) = vec(mean_c |A_c|^p),
// L2-normalised per sample -> [B, H*W].
torch::Tensor attention_map(const torch::Tensor& feature, double p);
// mean over batch and positions of (Q_s - Q_t)^2, the student's map resized (bilinear, before
// normalisation) to the teacher's spatial size when they differ.
torch::Tensor attention_loss(const torch::Tensor& student_feature, const torch::Tensor& teacher_feature, double p);

// CA-MKD (Zhang, Chen & Wang 2022, Sec. 2.1): per-sample teacher weights from each teacher's
// cross-entropy on the true label, w_k = (1 - softmax_k(CE_k)) / (K - 1); returns [K, B], columns sum to 1.
torch::Tensor confidence_weights(const std::vector<torch::Tensor>& teacher_logits, const torch::Tensor& labels);

}  // namespace kd::losses
