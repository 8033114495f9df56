"""py_sp: Similarity-Preserving KD (Tung & Mori, ICCV 2019, Sec. 3, Eq. 2-4), in Python.

Per tap pair, the batch's row-normalised Gram matrices are matched:

    Q = f.reshape(B, -1),  G = normalise_rows(Q Q^T)   (each row divided by max(||row||_2, 1e-12))
    sp = sum over tap pairs of (1 / B^2) ||G_t - G_s||_F^2
    L = (1 - alpha) CE + beta * sp (+ alpha * T^2 KL, only when alpha > 0)

The same method as kdbench's native ``sp`` (methods/sp.cpp; losses::similarity_preserving in
methods/relation_losses.cpp; ce_own_kd in methods/common_terms.cpp): terms ce (1 - alpha), sp (beta), kd (alpha,
only when alpha > 0), in that order, the same operations in the same order. Reference code: RepDistiller b84f547
distiller_zoo/SP.py Similarity. kdbench's own code, written from the native C++.
"""

from dataclasses import dataclass
from typing import List

import torch
import torch.nn.functional as F

import kdbench as kd
from kdbench.terms import soft_kl, ce_own_kd, check_batch as _check_batch


def similarity_preserving(fs, ft):
    """losses::similarity_preserving for one tap pair."""
    _check_batch("sp", fs, ft, 1)
    B = fs.size(0)
    qs = fs.reshape(B, -1)
    qt = ft.reshape(B, -1)
    gs = F.normalize(qs.matmul(qs.t()), p=2.0, dim=1)
    gt = F.normalize(qt.matmul(qt.t()), p=2.0, dim=1)
    return (gt - gs).pow(2).sum() / float(B * B)


class SimilarityPreserving(kd.Method):
    """Tung & Mori 2019 (Python port of sp): match the batch's row-normalised Gram matrices."""

    name = "py_sp"
    description = "Tung & Mori 2019: match the batch's row-normalised Gram matrices (similarity-preserving KD)"
    citation = "Tung & Mori, ICCV 2019, Sec. 3 (Eq. 2-4); reference RepDistiller distiller_zoo/SP.py Similarity"
    teachers = (1, 1)

    @dataclass
    class Options:
        student_taps: List[str] = kd.option(["block3"],
                                            doc="student taps, paired in order (RepDistiller: the last stage)")
        teacher_taps: List[str] = kd.option(["block3"], doc="teacher taps, paired in order")
        beta: float = kd.option(3000.0, range=(0.0, 1e7), doc="weight of the similarity term (RepDistiller: 3000)")
        alpha: float = kd.kd_alpha()
        temperature: float = kd.kd_temperature()

        def validate(self):
            kd.check_paired_taps(self.student_taps, self.teacher_taps)

    def student_taps(self):
        return list(self.opt.student_taps) + ["logits"]

    def teacher_taps(self, i):
        return list(self.opt.teacher_taps) + ["logits"]

    def compute(self, inp):
        o = self.opt
        sp = None
        for s_tap, t_tap in zip(o.student_taps, o.teacher_taps):
            loss = similarity_preserving(inp.student[s_tap], inp.teachers[0][t_tap])
            sp = loss if sp is None else sp + loss
        return ce_own_kd(inp, [kd.Term("sp", sp, float(o.beta))], float(o.alpha), float(o.temperature))
