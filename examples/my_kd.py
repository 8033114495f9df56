"""A distillation method written in Python, trained by kdbench (README, "Write a method in Python").

Hinton et al. 2015 with a twist a researcher might try: the teacher's temperature and the student's differ.
Run it with `build/kdbench sweep configs/python-method.json`.
"""
from dataclasses import dataclass

import torch.nn.functional as F

import kdbench as kd


class TwoTemperatureKD(kd.Method):
    """KD with separate teacher and student temperatures: T_s T_t KL(softmax(t/T_t) || softmax(s/T_s))."""

    name = "my_kd"

    @dataclass
    class Options:
        t_student: float = kd.option(4.0, range=(0.05, 100.0), doc="student softmax temperature")
        t_teacher: float = kd.option(4.0, range=(0.05, 100.0), doc="teacher softmax temperature")
        alpha: float = kd.option(0.9, range=(0.0, 1.0), doc="weight of the KD term; cross-entropy gets 1 - alpha")

    def compute(self, inp):
        s, t = inp.student["logits"], inp.teachers[0]["logits"]
        o = self.opt
        kl = F.kl_div(F.log_softmax(s / o.t_student, 1), F.softmax(t / o.t_teacher, 1), reduction="batchmean")
        return [kd.Term("ce", F.cross_entropy(s, inp.labels), 1 - o.alpha),
                kd.Term("kd", kl * o.t_student * o.t_teacher, o.alpha)]
