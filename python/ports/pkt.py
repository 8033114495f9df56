"""py_pkt: Probabilistic Knowledge Transfer (Passalis & Tefas, ECCV 2018, Sec. 3, Eq. 7-10), in Python.

The batch's cosine-similarity kernel K = (1 + cos) / 2 turned into conditional probabilities p_{j|i} = K_ij /
sum_k K_ik, the student's matched to the teacher's by KL divergence:
  reference form (default): x^ = x / (||x|| + 1e-7) (NaN -> 0), K over ALL pairs (the diagonal K_ii = 1 included),
      P = K / rowsum(K), pkt = mean over all B^2 entries of P_t log((P_t + 1e-7) / (P_s + 1e-7));
  paper form: the diagonal excluded from the normalisation and the KL, which is summed over i != j (no eps):
      pkt = sum_{i != j} p^t_{j|i} log(p^t_{j|i} / p^s_{j|i}).
    L = (1 - alpha) CE + beta * pkt (+ alpha * T^2 KL, only when alpha > 0)

The same method as kdbench's native ``pkt`` (methods/pkt.cpp; losses::pkt in methods/relation_losses.cpp; ce_own_kd
in methods/common_terms.cpp): terms ce (1 - alpha), pkt (beta), kd (alpha, only when alpha > 0), the same operations
in the same order. Reference code: RepDistiller b84f547 distiller_zoo/PKT.py PKT.cosine_similarity_loss (=
passalis/probabilistic_kt nn/pkt.py). kdbench's own code, written from the native C++.
"""

from dataclasses import dataclass

import torch

import kdbench as kd
from kdbench.terms import soft_kl, ce_own_kd, check_batch as _check_batch


def _cosine_kernel(f, eps):
    """(x x^T + 1) / 2 of the rows of f normalised as the reference does: x = f / (||f|| + eps), NaN -> 0."""
    x = f / (f.pow(2).sum(1, True).sqrt() + eps)
    x = torch.where(torch.isnan(x), torch.zeros_like(x), x)
    return (x.matmul(x.t()) + 1.0) / 2.0


def pkt_loss(fs, ft, form="reference"):
    """losses::pkt."""
    _check_batch("pkt", fs, ft, 2 if form == "paper" else 1)
    B = fs.size(0)
    s = fs.reshape(B, -1)
    t = ft.reshape(B, -1)
    if form != "paper":
        eps = 1e-7
        ks = _cosine_kernel(s, eps)
        kt = _cosine_kernel(t, eps)
        ps = ks / ks.sum(1, True)
        pt = kt / kt.sum(1, True)
        return (pt * torch.log((pt + eps) / (ps + eps))).mean()
    off = torch.eye(B, dtype=torch.bool, device=s.device).logical_not()

    def cond(f):
        k = _cosine_kernel(f, 0.0).masked_fill(off.logical_not(), 0.0)
        return k / k.sum(1, True)

    ps = cond(s).masked_select(off)
    pt = cond(t).masked_select(off)
    return (torch.xlogy(pt, pt) - pt * torch.log(ps)).sum()


class PKT(kd.Method):
    """Passalis & Tefas 2018 (Python port of pkt): KL between the batch's cosine-kernel conditional probabilities."""

    name = "py_pkt"
    description = ("Passalis & Tefas 2018: KL between the batch's cosine-kernel conditional "
                   "probabilities of student and teacher")
    citation = ("Passalis & Tefas, ECCV 2018, Sec. 3 (Eq. 7-10); reference RepDistiller distiller_zoo/PKT.py "
                "(= passalis/probabilistic_kt)")
    teachers = (1, 1)

    @dataclass
    class Options:
        student_tap: str = kd.option("pool", doc="student features (RepDistiller: the pooled features)")
        teacher_tap: str = kd.option("pool", doc="teacher features")
        beta: float = kd.option(30000.0, range=(0.0, 1e7), doc="weight of the PKT term (RepDistiller: 30000)")
        form: str = kd.form_option(
            "reference: mean over all B^2 pairs, self-similarity kept, eps 1e-7 (RepDistiller); paper: sum "
            "over i != j, self-similarity excluded")
        alpha: float = kd.kd_alpha()
        temperature: float = kd.kd_temperature()

    def student_taps(self):
        return [self.opt.student_tap, "logits"]

    def teacher_taps(self, i):
        return [self.opt.teacher_tap, "logits"]

    def compute(self, inp):
        o = self.opt
        form = "paper" if o.form == "paper" else "reference"
        value = pkt_loss(inp.student[o.student_tap], inp.teachers[0][o.teacher_tap], form)
        return ce_own_kd(inp, [kd.Term("pkt", value, float(o.beta))], float(o.alpha), float(o.temperature))
