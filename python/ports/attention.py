"""py_attention: attention transfer (Zagoruyko & Komodakis 2017, "Paying More Attention to Attention", ICLR,
Sec. 3.1, Eq. 2), in Python.

    Q(A) = vec(mean_c |A_c|^p) / ||vec(mean_c |A_c|^p)||_2            ([B, H*W] per tap)
    at   = sum over tap pairs of mean over batch and positions of (Q(A_s) - Q(A_t))^2
    L    = (1 - alpha) CE + beta * at (+ alpha * T^2 KL, only when alpha > 0)

Maps of different spatial size (``resize``): pool (default) adaptive-average-pools the larger RAW map to the smaller
one's size before the attention maps (RepDistiller); interpolate resizes the student's 2-D map mean_c |A_c|^p to the
teacher's size (bilinear, align_corners false) before flattening and normalising.

The same method as kdbench's native ``attention`` (methods/attention.cpp; losses::attention_loss,
losses::pool_to_common_size, losses::soft_kl in methods/losses.cpp; ce_own_kd in methods/common_terms.cpp): terms ce
(1 - alpha), at (beta), kd (alpha, only when alpha > 0), in that order, the same operations in the same order.
Reference code: RepDistiller b84f547 distiller_zoo/AT.py (Attention.at_loss). kdbench's own code, written from the
native C++.
"""

from dataclasses import dataclass
from typing import List

import torch
import torch.nn.functional as F

import kdbench as kd
from kdbench.terms import soft_kl, ce_own_kd, pool_to_common_size


def _channel_mean_pow(a, p):
    """mean_c |A_c|^p, keeping a channel dimension of 1: [B, 1, H, W]."""
    return a.abs().pow(p).mean(1, True)


def _l2_rows(m):
    return F.normalize(m.flatten(1), p=2.0, dim=1)


def attention_map(feature, p):
    """losses::attention_map: Q = vec(mean_c |A_c|^p), L2-normalised per sample."""
    return _l2_rows(_channel_mean_pow(feature, p))


def attention_loss(fs, ft, p, resize="pool"):
    """losses::attention_loss: mean over batch and positions of (Q_s - Q_t)^2 for one tap pair."""
    if resize == "pool":
        s, t = pool_to_common_size(fs, ft)
        return (attention_map(s, p) - attention_map(t, p)).pow(2).mean()
    a_s = _channel_mean_pow(fs, p)
    a_t = _channel_mean_pow(ft, p)
    if a_s.size(2) != a_t.size(2) or a_s.size(3) != a_t.size(3):
        a_s = F.interpolate(a_s, size=[a_t.size(2), a_t.size(3)], mode="bilinear", align_corners=False)
    return (_l2_rows(a_s) - _l2_rows(a_t)).pow(2).mean()


class Attention(kd.Method):
    """Zagoruyko & Komodakis 2017 (Python port of attention): match L2-normalised spatial attention maps."""

    name = "py_attention"
    description = "Zagoruyko & Komodakis 2017: match L2-normalised spatial attention maps at several depths"
    citation = "Zagoruyko & Komodakis 2017, Sec. 3.1, Eq. 2 (p = 2)"
    teachers = (1, 1)

    @dataclass
    class Options:
        student_taps: List[str] = kd.option(["block1", "block2", "block3"], doc="student taps, paired in order")
        teacher_taps: List[str] = kd.option(["block1", "block2", "block3"], doc="teacher taps, paired in order")
        p: float = kd.option(2.0, range=(1.0, 8.0), doc="exponent of |A|^p")
        beta: float = kd.option(1000.0, range=(0.0, 1e7), doc="weight of the attention term")
        alpha: float = kd.kd_alpha()
        temperature: float = kd.kd_temperature()
        resize: str = kd.option(
            "pool", choices=("pool", "interpolate"),
            doc="maps of different sizes: pool = the larger raw map average-pooled to the smaller (RepDistiller); "
                "interpolate = the student's attention map bilinearly resized to the teacher's")

        def validate(self):
            kd.check_paired_taps(self.student_taps, self.teacher_taps)

    def student_taps(self):
        return list(self.opt.student_taps) + ["logits"]

    def teacher_taps(self, i):
        return list(self.opt.teacher_taps) + ["logits"]

    def compute(self, inp):
        o = self.opt
        resize = "interpolate" if o.resize == "interpolate" else "pool"
        at = None
        for s_tap, t_tap in zip(o.student_taps, o.teacher_taps):
            loss = attention_loss(inp.student[s_tap], inp.teachers[0][t_tap], float(o.p), resize)
            at = loss if at is None else at + loss
        return ce_own_kd(inp, [kd.Term("at", at, float(o.beta))], float(o.alpha), float(o.temperature))
