"""py_logit_kd: Hinton, Vinyals & Dean 2015 ("Distilling the Knowledge in a Neural Network", Sec. 2), in Python.

    L = ce_weight * CE(s, y) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T))

the KL summed over classes and averaged over the batch; ce_weight = 1 - alpha unless set. With
``logit_standardization: true`` (Sun et al., CVPR 2024) both logit sets are z-scored per sample before the KD term,
``temperature`` is then the base temperature (T^2 uses it) and CE stays on the raw logits:
  reference form: (z - mean z) / (1e-7 + std z), std Bessel-corrected (C - 1), as the authors' code;
  paper form:     (z - mean z) / std z, population std (1 / C), no epsilon.

The same method as kdbench's native ``logit_kd`` (methods/logit_kd.cpp; losses::soft_kl in methods/losses.cpp,
losses::standardize_logits in methods/logit_losses.cpp), term for term: ce (ce_weight), kd (alpha), computed with the
same torch operations in the same order and dtype (the taps' own, float32 in training). Reference code of the
formula: RepDistiller b84f547 distiller_zoo/KD.py DistillKL (= mdistiller a08d46f kd_loss); logit standardisation:
sunshangquan/logit-standardization-KD f6e5aa5 mdistiller/distillers/KD.py (normalize, kd_loss). kdbench's own code,
written from the native C++.

Not expressible here: the native options ce_weight, logit_standardization and standardization_form are declared
``omitted_at_default`` (left out of the resolved parameters, so of run ids, while at their defaults); kd.option has no
such flag. It changes run ids only, never the training.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

import kdbench as kd
from kdbench.terms import soft_kl, standardize_logits


class LogitKD(kd.Method):
    """Hinton et al. 2015 (Python port of logit_kd): alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE."""

    name = "py_logit_kd"
    description = ("Hinton et al. 2015: alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE; "
                   "optionally on standardised logits (Sun et al. 2024)")
    citation = ("Hinton, Vinyals & Dean 2015, Sec. 2 (T^2 scaling: end of Sec. 2); reference RepDistiller DistillKL. "
                "Logit standardisation: Sun et al., CVPR 2024, Sec. 3; reference sunshangquan/logit-standardization-KD "
                "kd_loss")
    teachers = (1, 1)

    @dataclass
    class Options:
        temperature: float = kd.option(4.0, range=(0.05, 100.0),
                                       doc="softmax temperature T (the base temperature with logit_standardization)")
        alpha: float = kd.option(0.9, range=(0.0, 100.0),
                                 doc="weight of the KD term; CE gets 1 - alpha unless ce_weight is set (then alpha may "
                                     "exceed 1)")
        ce_weight: float = kd.option(-1.0, range=(-1.0, 100.0), doc="weight of CE; -1 = 1 - alpha")
        logit_standardization: bool = kd.option(
            False, doc="z-score both logit sets per sample before the KD term (Sun et al. 2024)")
        standardization_form: str = kd.form_option(
            "reference: (z - mean) / (1e-7 + Bessel std) as the authors' code; paper: population std, no eps")

        def validate(self):
            if self.ce_weight < 0 and self.alpha > 1.0:
                raise kd.OptionError("alpha", f"{self.alpha:g} is above 1, so CE would get 1 - alpha < 0: "
                                              f"set ce_weight too")

    def __init__(self, opt):
        super().__init__(opt)
        self.T = float(opt.temperature)
        self.alpha = float(opt.alpha)
        self.ce_weight = 1.0 - opt.alpha if opt.ce_weight < 0 else float(opt.ce_weight)
        self.form = "paper" if opt.standardization_form == "paper" else "reference"

    def teacher_taps(self, i):
        return ["logits"]

    def compute(self, inp):
        s = inp.student["logits"]
        t = inp.teachers[0]["logits"]
        if self.opt.logit_standardization:
            kd_term = soft_kl(standardize_logits(s, self.form), standardize_logits(t, self.form), self.T)
        else:
            kd_term = soft_kl(s, t, self.T)
        return [kd.Term("ce", F.cross_entropy(s, inp.labels), self.ce_weight),
                kd.Term("kd", kd_term, self.alpha)]
