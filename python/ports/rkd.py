"""py_rkd: Relational Knowledge Distillation (Park, Kim, Lu & Cho, CVPR 2019, Sec. 3, Eq. 4-7), in Python.

The student matches the teacher's normalised pairwise distances and the angles of triplets, through the Huber loss
(smooth L1, delta 1), on the features flattened per sample (e = f.reshape(B, -1)):

    d_ij = sqrt(max(||e_i||^2 + ||e_j||^2 - 2 e_i.e_j, 1e-12)), d_ii = 0;  d /= mean of d over d > 0
    angle[a, b, c] = <u_ab, u_ac>,  u_ab = (e_b - e_a) / max(||e_b - e_a||, 1e-12)
    reference form (default): distance = mean over ALL B^2 pairs of huber(d_s - d_t), angle = mean over ALL B^3
        triplets of huber(angle_s - angle_t) (degenerate ones count);
    paper form: the same means over the distinct pairs (i != j) and triplets (a, b, c distinct) only.
    The teacher's side is computed without gradient.
    L = (1 - alpha) CE + distance_weight * distance + angle_weight * angle (+ alpha * T^2 KL, only when alpha > 0)

The same method as kdbench's native ``rkd`` (methods/rkd.cpp; losses::rkd in methods/relation_losses.cpp; ce_own_kd
in methods/common_terms.cpp): terms ce (1 - alpha), distance, angle, kd (alpha, only when alpha > 0), the same
operations in the same order. Reference code: RepDistiller b84f547 distiller_zoo/RKD.py RKDLoss(w_d=25, w_a=50) (=
lenscloth/RKD metric/loss.py). kdbench's own code, written from the native C++.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

import kdbench as kd
from kdbench.terms import soft_kl, ce_own_kd, check_batch as _check_batch


def _eye_bool(n, like):
    return torch.eye(n, dtype=torch.bool, device=like.device)


def _pairwise_distances(e):
    """RepDistiller's RKDLoss.pdist: clamp at 1e-12 before the square root, the diagonal 0 after it."""
    sq = e.pow(2).sum(1)
    d2 = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e.matmul(e.t())).clamp_min(1e-12)
    return d2.sqrt().masked_fill(_eye_bool(e.size(0), e), 0.0)


def _normalised_pdist(e):
    d = _pairwise_distances(e)
    return d / d.masked_select(d > 0).mean()


def _angles(e):
    """angle[a, b, c] = <u_ab, u_ac>, u_ab = normalise(e_b - e_a), flattened to [B^3]."""
    u = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2.0, dim=2)
    return torch.bmm(u, u.transpose(1, 2)).reshape(-1)


def _huber(a, b):
    return F.smooth_l1_loss(a, b, reduction="none")


def rkd_terms(fs, ft, form="reference"):
    """losses::rkd: the unweighted (distance, angle)."""
    _check_batch("rkd", fs, ft, 3 if form == "paper" else 2)
    B = fs.size(0)
    s = fs.reshape(B, -1)
    t = ft.reshape(B, -1)
    with torch.no_grad():
        td = _normalised_pdist(t)
        ta = _angles(t)
    hd = _huber(_normalised_pdist(s), td)  # [B, B]
    ha = _huber(_angles(s), ta)  # [B^3]
    if form != "paper":
        return hd.mean(), ha.mean()
    off = _eye_bool(B, s).logical_not()
    distinct = off.unsqueeze(2) & off.unsqueeze(1) & off.unsqueeze(0)  # a != b, a != c, b != c
    return hd.masked_select(off).mean(), ha.masked_select(distinct.reshape(-1)).mean()


class RKD(kd.Method):
    """Park et al. 2019 (Python port of rkd): match normalised pairwise distances and triplet angles (Huber)."""

    name = "py_rkd"
    description = ("Park et al. 2019: match normalised pairwise distances and triplet angles of the "
                   "batch (Huber loss)")
    citation = ("Park et al., CVPR 2019, Sec. 3 (Eq. 4-7); reference RepDistiller distiller_zoo/RKD.py RKDLoss "
                "(= lenscloth/RKD)")
    teachers = (1, 1)

    @dataclass
    class Options:
        student_tap: str = kd.option("pool", doc="student features (RepDistiller: the pooled features)")
        teacher_tap: str = kd.option("pool", doc="teacher features")
        distance_weight: float = kd.option(25.0, range=(0.0, 1e7), doc="weight of the distance term (reference 25)")
        angle_weight: float = kd.option(50.0, range=(0.0, 1e7), doc="weight of the angle term (reference 50)")
        form: str = kd.form_option(
            "reference: means over all B^2 pairs and B^3 triplets (RepDistiller); paper: over distinct "
            "pairs and triplets only")
        alpha: float = kd.kd_alpha()
        temperature: float = kd.kd_temperature()

    def student_taps(self):
        return [self.opt.student_tap, "logits"]

    def teacher_taps(self, i):
        return [self.opt.teacher_tap, "logits"]

    def compute(self, inp):
        o = self.opt
        form = "paper" if o.form == "paper" else "reference"
        distance, angle = rkd_terms(inp.student[o.student_tap], inp.teachers[0][o.teacher_tap], form)
        return ce_own_kd(inp, [kd.Term("distance", distance, float(o.distance_weight)),
                               kd.Term("angle", angle, float(o.angle_weight))], float(o.alpha), float(o.temperature))
