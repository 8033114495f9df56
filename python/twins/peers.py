"""The peers' own loss code as kdbench plugins, for the twin check against kdbench's native methods.

Each class here is a Python port (python/ports/) whose method-specific term is computed by the PEER's code instead,
imported unmodified from a checkout the user points to (nothing of it is copied into kdbench):

    KDBENCH_REPDISTILLER=/path/to/RepDistiller   distiller_zoo: DistillKL, Attention, Similarity, RKDLoss, PKT, HintLoss
    KDBENCH_MDISTILLER=/path/to/mdistiller        mdistiller.distillers: KD.kd_loss, DKD.dkd_loss

The taps, stages, CE and KD terms, weights and modules stay the port's (which train exactly as the native methods:
tests/test_pybridge_twins.cpp), so a difference the twin check finds is a difference between the peer's loss and
kdbench's native one. scripts/twin-check loads this file and names the pairs (e.g. attention=rd_attention).
Not wrapped: RepDistiller's CRD (its negatives come from its own sampler, so no two runs can be step-equal) and the
methods whose peer losses need the peer's models or trainers.
"""

import os
import sys

import torch

import kdbench as kd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ports"))

import attention as port_attention  # noqa: E402
import dkd as port_dkd  # noqa: E402
import fitnets as port_fitnets  # noqa: E402
import logit_kd as port_logit_kd  # noqa: E402
import pkt as port_pkt  # noqa: E402
import rkd as port_rkd  # noqa: E402
import sp as port_sp  # noqa: E402

_RD = os.environ.get("KDBENCH_REPDISTILLER", "")
_MD = os.environ.get("KDBENCH_MDISTILLER", "")
if _RD:
    sys.path.insert(0, _RD)
    import distiller_zoo as rd  # noqa: E402
if _MD:
    sys.path.insert(0, _MD)
    import importlib  # noqa: E402

    md_kd = importlib.import_module("mdistiller.distillers.KD")  # the modules (the package exports the classes)
    md_dkd = importlib.import_module("mdistiller.distillers.DKD")


def _replace(terms, name, value):
    """The port's terms with term `name`'s value computed by the peer's code (same name, same weight)."""
    out, found = [], False
    for t in terms:
        if t.name == name:
            out.append(kd.Term(t.name, value.reshape(()), t.weight))
            found = True
        else:
            out.append(t)
    if not found:
        raise RuntimeError(f"the port returned no '{name}' term")
    return out


def _need(flag, what):
    if not flag:
        raise RuntimeError(f"set {what} to a checkout of that repository (scripts/twin-check does)")


if _RD:
    class RdLogitKD(port_logit_kd.LogitKD):
        """RepDistiller distiller_zoo/KD.py DistillKL as the kd term of logit_kd."""

        name = "rd_logit_kd"

        def compute(self, inp):
            _need(not self.opt.logit_standardization, "logit_standardization: false")
            s, t = inp.student["logits"], inp.teachers[0]["logits"]
            return _replace(super().compute(inp), "kd", rd.DistillKL(self.T)(s, t))

    class RdAttention(port_attention.Attention):
        """RepDistiller distiller_zoo/AT.py Attention(p) summed over the tap pairs as the at term."""

        name = "rd_attention"

        def compute(self, inp):
            o = self.opt
            _need(o.resize == "pool", "resize: pool (RepDistiller pools the larger map)")
            g_s = [inp.student[k] for k in o.student_taps]
            g_t = [inp.teachers[0][k] for k in o.teacher_taps]
            return _replace(super().compute(inp), "at", sum(rd.Attention(o.p)(g_s, g_t)))

    class RdSimilarity(port_sp.SimilarityPreserving):
        """RepDistiller distiller_zoo/SP.py Similarity summed over the tap pairs as the sp term."""

        name = "rd_sp"

        def compute(self, inp):
            o = self.opt
            g_s = [inp.student[k] for k in o.student_taps]
            g_t = [inp.teachers[0][k] for k in o.teacher_taps]
            return _replace(super().compute(inp), "sp", sum(rd.Similarity()(g_s, g_t)))

    class RdRKD(port_rkd.RKD):
        """RepDistiller distiller_zoo/RKD.py RKDLoss, its distance and angle parts (w_d, w_a = 1, 0 and 0, 1)."""

        name = "rd_rkd"

        def compute(self, inp):
            o = self.opt
            _need(o.form == "reference", "form: reference")
            f_s, f_t = inp.student[o.student_tap], inp.teachers[0][o.teacher_tap]
            terms = _replace(super().compute(inp), "distance", rd.RKDLoss(1, 0)(f_s, f_t))
            return _replace(terms, "angle", rd.RKDLoss(0, 1)(f_s, f_t))

    class RdPKT(port_pkt.PKT):
        """RepDistiller distiller_zoo/PKT.py PKT as the pkt term."""

        name = "rd_pkt"

        def compute(self, inp):
            o = self.opt
            _need(o.form == "reference", "form: reference")
            f_s, f_t = inp.student[o.student_tap], inp.teachers[0][o.teacher_tap]
            return _replace(super().compute(inp), "pkt", rd.PKT()(f_s, f_t))

    class RdFitNets(port_fitnets.FitNets):
        """RepDistiller distiller_zoo/FitNet.py HintLoss (MSE) on the regressor's output as the hint term."""

        name = "rd_fitnets"

        def compute(self, inp):
            o = self.opt
            reg = self.regressor
            _need(reg.kind == "conv", "regressor: conv")
            r, t = port_fitnets.pool_to_common_size(reg.bn(reg.conv(inp.student[o.student_tap])),
                                                    inp.teachers[0][o.teacher_tap])
            return _replace(super().compute(inp), "hint", rd.HintLoss()(r, t))

if _MD:
    class MdKD(port_logit_kd.LogitKD):
        """mdistiller distillers/KD.py kd_loss as the kd term of logit_kd."""

        name = "md_logit_kd"

        def compute(self, inp):
            _need(not self.opt.logit_standardization, "logit_standardization: false")
            s, t = inp.student["logits"], inp.teachers[0]["logits"]
            return _replace(super().compute(inp), "kd", md_kd.kd_loss(s, t, self.T))

    class MdDKD(port_dkd.DKD):
        """mdistiller distillers/DKD.py dkd_loss, its TCKD and NCKD parts (alpha, beta = 1, 0 and 0, 1)."""

        name = "md_dkd"

        def compute(self, inp):
            _need(not self.opt.logit_standardization, "logit_standardization: false")
            s, t, y = inp.student["logits"], inp.teachers[0]["logits"], inp.labels
            terms = _replace(super().compute(inp), "tckd", md_dkd.dkd_loss(s, t, y, 1.0, 0.0, self.T))
            return _replace(terms, "nckd", md_dkd.dkd_loss(s, t, y, 0.0, 1.0, self.T))
