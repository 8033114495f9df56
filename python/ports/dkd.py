"""py_dkd: Decoupled Knowledge Distillation (Zhao, Cui, Song, Qiu & Liang, CVPR 2022, Sec. 3, Eq. 1-7, Alg. 1).

KD split into target-class KD (TCKD, the binary true-class / other-classes distributions) and non-target-class KD
(NCKD, the distribution over the other classes), weighted freely after a warm-up:

    L = CE(s, y) + w(epoch) * (alpha * TCKD + beta * NCKD),   w = min((epoch + 1) / warmup_epochs, 1)  (1 if <= 1)
    b^X  = [sum_c p^X_c g_c, sum_c p^X_c (1 - g_c)],  p^X = softmax(z_X / T), g = one-hot(y)
    TCKD = T^2 / B * sum_b sum_k b^T_k (log b^T_k - log b^S_k)
    NCKD = T^2 / B * sum_b sum_c q^T_c (log q^T_c - log q^S_c),  q^X = softmax(z_X / T - 1000 g)

(epoch + 1: mdistiller's 1-based epoch; Input.epoch is 0-based). Optionally on standardised logits (Sun et al.,
CVPR 2024; forms as in py_logit_kd).

The same method as kdbench's native ``dkd`` (methods/dkd.cpp; losses::dkd and losses::standardize_logits in
methods/logit_losses.cpp): terms ce (1), tckd (w * alpha), nckd (w * beta), the same operations in the same order.
Reference code: megvii-research/mdistiller a08d46f mdistiller/distillers/DKD.py (dkd_loss, DKD.forward_train);
sunshangquan/logit-standardization-KD f6e5aa5 DKD.py. kdbench's own code, written from the native C++.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

import kdbench as kd
from kdbench.terms import standardize_logits, check_logits as _check_logits


def _kl_sum(log_input, target):
    """Sum over all elements of target (log target - log_input), 0 where target = 0."""
    return (torch.xlogy(target, target) - target * log_input).sum()


def dkd_terms(s, t, labels, T):
    """losses::dkd: the unweighted (tckd, nckd)."""
    _check_logits("dkd", s, t)
    B = float(s.size(0))
    gt = torch.zeros_like(s).scatter_(1, labels.reshape(-1, 1), 1.0)
    other = 1.0 - gt
    ps = torch.softmax(s / T, 1)
    pt = torch.softmax(t / T, 1)

    def binary(p):
        return torch.cat([(p * gt).sum(1, True), (p * other).sum(1, True)], 1)

    tckd = _kl_sum(torch.log(binary(ps)), binary(pt)) * (T * T) / B
    qt = torch.softmax(t / T - 1000.0 * gt, 1)
    log_qs = torch.log_softmax(s / T - 1000.0 * gt, 1)
    nckd = _kl_sum(log_qs, qt) * (T * T) / B
    return tckd, nckd


class DKD(kd.Method):
    """Zhao et al. 2022 (Python port of dkd): CE + min(epoch/warmup, 1) * (alpha * TCKD + beta * NCKD)."""

    name = "py_dkd"
    description = ("Zhao et al. 2022: CE + min(epoch/warmup, 1) * (alpha * TCKD + beta * NCKD) "
                   "(mdistiller's dkd_loss); optionally on standardised logits (Sun et al. 2024)")
    citation = ("Zhao et al., CVPR 2022, Sec. 3 (Eq. 1-7) and Alg. 1; reference mdistiller DKD.py dkd_loss and "
                "DKD.forward_train. Logit standardisation: Sun et al., CVPR 2024; reference "
                "sunshangquan/logit-standardization-KD DKD.py")
    teachers = (1, 1)

    @dataclass
    class Options:
        alpha: float = kd.option(1.0, range=(0.0, 1e4), doc="weight of TCKD (the paper's alpha; CE keeps weight 1)")
        beta: float = kd.option(8.0, range=(0.0, 1e4), doc="weight of NCKD (the paper's beta)")
        temperature: float = kd.option(4.0, range=(0.05, 100.0),
                                       doc="softmax temperature T (the base temperature with logit_standardization)")
        warmup_epochs: int = kd.option(
            20, range=(0, 100000),
            doc="TCKD and NCKD weighted by min(epoch / warmup_epochs, 1), epoch 1-based (0 or 1: no warm-up)")
        logit_standardization: bool = kd.option(False,
                                                doc="z-score both logit sets per sample before DKD (Sun et al. 2024)")
        standardization_form: str = kd.form_option(
            "reference: (z - mean) / (1e-7 + Bessel std) as the authors' code; paper: population std, no eps")

    def __init__(self, opt):
        super().__init__(opt)
        self.alpha = float(opt.alpha)
        self.beta = float(opt.beta)
        self.T = float(opt.temperature)
        self.warmup = int(opt.warmup_epochs)
        self.form = "paper" if opt.standardization_form == "paper" else "reference"

    def teacher_taps(self, i):
        return ["logits"]

    def warmup_factor(self, epoch):
        """mdistiller's min(epoch / WARMUP, 1.0) with its 1-based epoch; Input.epoch is 0-based."""
        if self.warmup <= 1:
            return 1.0
        return min(float(epoch + 1) / float(self.warmup), 1.0)

    def compute(self, inp):
        s = inp.student["logits"]
        t = inp.teachers[0]["logits"]
        if self.opt.logit_standardization:
            tckd, nckd = dkd_terms(standardize_logits(s, self.form), standardize_logits(t, self.form), inp.labels,
                                   self.T)
        else:
            tckd, nckd = dkd_terms(s, t, inp.labels, self.T)
        w = self.warmup_factor(inp.epoch)
        return [kd.Term("ce", F.cross_entropy(s, inp.labels), 1.0),
                kd.Term("tckd", tckd, w * self.alpha),
                kd.Term("nckd", nckd, w * self.beta)]
