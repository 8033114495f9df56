"""Test plugin: a logit-KD method that fails on purpose (tests/test_pybridge_plugins.cpp asserts line 24)."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import kdbench as kd


class FaultyKD(kd.Method):
    """Logit KD that raises in compute at a chosen step, or returns NaN, to test how failures are handled."""

    name = "faulty_kd"

    @dataclass
    class Options:
        fail_step: int = kd.option(-1, range=(-1, 100000), doc="raise ZeroDivisionError at this step of epoch 0")
        nan_step: int = kd.option(-1, range=(-1, 100000), doc="return NaN in the kd term at this step of epoch 0")

    def compute(self, inp):
        s, t = inp.student["logits"], inp.teachers[0]["logits"]
        kl = F.kl_div(F.log_softmax(s / 4, 1), F.softmax(t / 4, 1), reduction="batchmean") * 16
        if inp.epoch == 0 and inp.step == self.opt.fail_step:
            ratio = inp.step / 0  # the line the error must name
            kl = kl * ratio
        if inp.epoch == 0 and inp.step == self.opt.nan_step:
            kl = kl * torch.tensor(float("nan"))
        return [kd.Term("ce", F.cross_entropy(s, inp.labels), 0.1), kd.Term("kd", kl, 0.9)]
