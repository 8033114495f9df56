"""Test plugin: logit KD with a classic mistake (the T^2 factor is missing). The twin test trains it beside the
native logit_kd and must report that the two differ."""
from dataclasses import dataclass

import torch.nn.functional as F

import kdbench as kd


class WrongLogitKD(kd.Method):
    """Hinton KD without T^2 (wrong on purpose)."""

    name = "wrong_logit_kd"

    @dataclass
    class Options:
        temperature: float = kd.option(4.0, range=(0.05, 100.0), doc="softmax temperature T")
        alpha: float = kd.option(0.9, range=(0.0, 1.0), doc="weight of the KD term")

    def compute(self, inp):
        s, t = inp.student["logits"], inp.teachers[0]["logits"]
        T = self.opt.temperature
        kl = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean")  # no * T * T
        return [kd.Term("ce", F.cross_entropy(s, inp.labels), 1 - self.opt.alpha), kd.Term("kd", kl, self.opt.alpha)]
