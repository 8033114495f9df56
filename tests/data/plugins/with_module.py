"""Test plugin with a module of its own: a regressor from the student's logits to the teacher's, trained with the
student, a buffer it updates in place (a running mean of the teacher's logits), and two stages (the regressor
alone, then everything)."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import kdbench as kd


class LinearProbeKD(kd.Method):
    """A linear map from student to teacher logits, fitted by mean squared error, then CE + MSE."""

    name = "linear_probe_kd"

    @dataclass
    class Options:
        beta: float = kd.option(1.0, range=(0.0, 1000.0), doc="weight of the probe's mean squared error")
        probe_epochs: int = kd.option(1, range=(1, 100), doc="epochs of the first stage (probe only)")

    def stages(self):
        return [kd.Stage("probe", epochs=self.opt.probe_epochs, train_student=False, train_modules=["probe"]),
                kd.Stage("main")]

    def prepare(self, ctx):
        c_s, c_t = ctx.student["logits"][1], ctx.teachers[0]["logits"][1]
        m = torch.nn.Module()
        m.probe = torch.nn.Linear(c_s, c_t).to(ctx.device)
        m.register_buffer("teacher_mean", torch.zeros(c_t, device=ctx.device))
        self.m = m
        return m

    def compute(self, inp):
        s, t = inp.student["logits"], inp.teachers[0]["logits"]
        with torch.no_grad():
            self.m.teacher_mean.mul_(0.9).add_(t.mean(0), alpha=0.1)
        mse = F.mse_loss(self.m.probe(s), t)
        if inp.stage == 0:
            return [kd.Term("probe", mse, self.opt.beta)]
        return [kd.Term("ce", F.cross_entropy(s, inp.labels), 1.0), kd.Term("probe", mse, self.opt.beta)]
