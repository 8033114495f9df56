// Pure loss functions on features for the relation- and feature-based methods of part 1 (sp, rkd, pkt, nst,
// cc), beside methods/losses.h. Each is the implementation that produced the published numbers (the
// "reference": HobbitLong/RepDistiller b84f547, distiller_zoo/); where the paper's formula differs
// meaningfully, the paper's form is here too, under its own name. The method files' headers list every
// difference. tests/test_methods_reference.cpp checks each against values computed by the reference code
// (tests/data/reference/*.json, with their provenance); the paper forms against the stated arithmetic.
// Features: [B, ...] (flattened per sample where a vector is needed); maps [B, C, H, W].
#pragma once
#include <torch/torch.h>

#include "methods/form.h"

namespace kd::losses {

using Form = kd::Form;

// ---- SP: Tung & Mori, ICCV 2019 ("Similarity-Preserving Knowledge Distillation"), Eq. 2-4 ------------------
// RepDistiller distiller_zoo/SP.py `Similarity.similarity_loss`: Q = f.view(B, -1), G = Q Q^T (B x B), each
// ROW L2-normalised (divided by max(||row||, 1e-12)), loss = sum_ij (G_t - G_s)^2 / B^2. The paper's formula
// is the same (row-wise normalisation, 1/b^2 Frobenius norm); the only difference is the 1e-12 clamp.
// Student and teacher may differ in channels and spatial size.
torch::Tensor similarity_preserving(const torch::Tensor& student_feature, const torch::Tensor& teacher_feature);

// ---- RKD: Park et al., CVPR 2019 ("Relational Knowledge Distillation"), Eq. 4-7 -----------------------------
// RepDistiller distiller_zoo/RKD.py `RKDLoss` (the same as the authors' lenscloth/RKD metric/loss.py):
//   d_ij = sqrt(max(||e_i||^2 + ||e_j||^2 - 2 e_i.e_j, 1e-12)), d_ii = 0; d /= mean of d over d > 0 (the
//   off-diagonal pairs); teacher likewise (no gradient);
//   distance = mean over ALL B^2 entries of huber(d_s - d_t) (smooth L1, delta 1; the zero diagonal counts);
//   angle    = mean over ALL B^3 entries (a, b, c) of huber(<u_ab, u_ac>_s - <u_ab, u_ac>_t), u_ab the
//              L2-normalised e_b - e_a (zero vectors stay zero); degenerate triplets (b = a, c = a, b = c)
//              add 0 but count.
// Paper form: the same terms averaged over the paper's sets only, the distinct pairs i != j and the triplets
// of three distinct samples (distance x B / (B - 1), angle x B^2 / ((B - 1)(B - 2)) of the reference). The
// paper writes sums; averaging keeps the weights independent of the batch size.
struct RkdTerms {
  torch::Tensor distance, angle;
};
RkdTerms rkd(const torch::Tensor& student, const torch::Tensor& teacher, Form form);

// ---- PKT: Passalis & Tefas, ECCV 2018 ("Learning Deep Representations with Probabilistic Knowledge
// Transfer"), Eq. 7-10 ---------------------------------------------------------------------------------------
// RepDistiller distiller_zoo/PKT.py `PKT.cosine_similarity_loss` (the authors' passalis/probabilistic_kt
// nn/pkt.py), eps = 1e-7: x^ = x / (||x|| + eps) (NaN -> 0), K = (x^ x^^T + 1) / 2 INCLUDING the diagonal,
// P = K / rowsum(K), loss = mean over all B^2 entries of P_t log((P_t + eps) / (P_s + eps)).
// Paper form: the self-similarity excluded from the normalisation and from the KL, which is summed:
// p_{j|i} = K_ij / sum_{k != i} K_ik, loss = sum_{i != j} p^t_{j|i} log(p^t_{j|i} / p^s_{j|i}) (no eps).
torch::Tensor pkt(const torch::Tensor& student, const torch::Tensor& teacher, Form form);

// ---- NST: Huang & Wang 2017 ("Like What You Like: Knowledge Distill via Neuron Selectivity Transfer"),
// Eq. 4-6, polynomial kernel d = 2, c = 0 ----------------------------------------------------------------------
// RepDistiller distiller_zoo/NST.py `NSTLoss.nst_loss` (full_loss branch): the larger map is adaptive-
// average-pooled to the smaller one's spatial size (losses::pool_to_common_size); each channel's flattened
// map is L2-normalised (eps 1e-12); with k(a, b) = (a.b)^2 over channel pairs,
//   loss = mean k(t, t) (no gradient) + mean k(s, s) - 2 mean k(s, t),
// each mean over the batch and the channel pairs (C_t^2, C_s^2, C_s C_t): the squared MMD per sample,
// averaged over the batch. Channel counts may differ.
torch::Tensor nst(const torch::Tensor& student_feature, const torch::Tensor& teacher_feature);

// ---- CC: Peng et al., ICCV 2019 ("Correlation Congruence for Knowledge Distillation") -----------------------
// Reference, RepDistiller distiller_zoo/CC.py `Correlation` (code the authors shared with RepDistiller):
//   delta = |f_s - f_t| (elementwise, [B, D]); loss = (1 / (B - 1)) sum_{i < B-1} <delta_i, delta_{i+1}>:
// only neighbours in batch order interact, so the value depends on the order of the batch.
// Paper form (Sec. 3.2, Eq. 5-9): features L2-normalised, correlation matrices psi_ij = k(f_i, f_j) with the
// Gaussian RBF kernel approximated by its Taylor series of order P,
//   k(x, y) = sum_{p=0..P} exp(-2 gamma) (2 gamma)^p / p! (x.y)^p,
// and loss = (1 / B^2) ||psi(F_t) - psi(F_s)||_F^2.
torch::Tensor correlation_congruence(const torch::Tensor& student_embedding, const torch::Tensor& teacher_embedding);
torch::Tensor correlation_congruence_paper(const torch::Tensor& student_embedding,
                                           const torch::Tensor& teacher_embedding, double gamma, int64_t order);

}  // namespace kd::losses
