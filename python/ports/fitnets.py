"""py_fitnets: FitNets (Romero et al. 2015, "FitNets: Hints for Thin Deep Nets", ICLR, Sec. 2.2 and 2.3), in Python.

A regressor r maps the student's guided layer v_g to the teacher's hint layer u_h:
    conv_reg (default): RepDistiller's ConvReg: a conv WITH bias chosen by the maps' heights (3x3 stride 2 when the
                        student's map is twice the teacher's, a 4x4 stride-2 transposed conv when half, else a conv
                        whose kernel shrinks the student's map to the teacher's: 1x1 when equal), then BatchNorm and
                        a ReLU; children ``conv`` and ``bn`` (the reference's parameter names);
    conv1x1_bn:         1x1 conv (no bias) + BatchNorm, C_s -> C_t channels; when the spatial sizes differ, the
                        LARGER of r(v_g) and u_h is adaptive-average-pooled to the smaller one's size;
    linear:             a fully connected layer from the flattened v_g to the flattened u_h.
    hint = mean((r(v_g) - u_h)^2) over every element  (= 2/N x the batch mean of Eq. 3's 1/2 ||u_h - r(v_g)||^2)
one_stage: terms ce (1 - alpha), kd (alpha; omitted when alpha = 0), hint (beta), trained jointly.
two_stage: stage "hint" (hint_epochs epochs) trains only the student up to its guided tap (and r) on the hint alone
           (term hint, weight 1); stage "kd" then trains the whole student on ce (1 - alpha) + kd (alpha).

The same method as kdbench's native ``fitnets`` (methods/fitnets.cpp, methods/conv_reg.cpp; losses::hint_mse,
losses::pool_to_common_size, losses::soft_kl in methods/losses.cpp): the same options, taps, stages and terms, and the
same module (``FitNetsRegressor``), built on the CPU with the layers created in the native order (so one seed gives
the same initial weights; PyTorch's nn.Conv2d / nn.ConvTranspose2d / nn.Linear initialise as LibTorch's) and then
moved to the run's device, as the native one is. Reference code: RepDistiller b84f547 models/util.py ConvReg and
distiller_zoo/FitNet.py HintLoss (its CIFAR-100 table: one_stage, alpha 0, beta 100). kdbench's own code, written
from the native C++.
"""

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import kdbench as kd
from kdbench.terms import soft_kl, pool_to_common_size


def hint_mse(adapted_student, teacher):
    """losses::hint_mse: the mean squared error over every element."""
    return (adapted_student - teacher).pow(2).mean()


def _flat(shape):
    n = 1
    for d in shape[1:]:
        n *= d
    return n


class FitNetsRegressor(nn.Module):
    """The native regressor, by kind: "conv_reg" (RepDistiller's ConvReg: children conv, bn; then a ReLU),
    "conv1x1_bn" (children conv, bn) or "linear" (child linear), from the student's tap to the teacher's."""

    def __init__(self, kind, s_shape, t_shape, s_tap="", t_tap=""):
        super().__init__()
        self.kind = kind
        what = f"'{s_tap}' / '{t_tap}'"
        # regressor forms (1/2): the layers, created in the native order (the order of the random draws).
        if kind == "linear":
            self.linear = nn.Linear(_flat(s_shape), _flat(t_shape))
        elif kind == "conv_reg":
            # methods/conv_reg.cpp (RepDistiller b84f547 models/util.py ConvReg): the conv's shape from the heights.
            if len(s_shape) != 4 or len(t_shape) != 4:
                raise kd.OptionError("student_tap", f"RepDistiller's ConvReg needs 4-D feature maps ({what})")
            _, s_c, s_h, s_w = s_shape
            _, t_c, t_h, t_w = t_shape
            if s_h == 2 * t_h:
                self.conv = nn.Conv2d(s_c, t_c, 3, stride=2, padding=1)
            elif s_h * 2 == t_h:
                self.conv = nn.ConvTranspose2d(s_c, t_c, 4, stride=2, padding=1)
            elif s_h >= t_h and s_w >= t_w:
                self.conv = nn.Conv2d(s_c, t_c, (1 + s_h - t_h, 1 + s_w - t_w))
            else:
                raise kd.OptionError("student_tap", f"RepDistiller's ConvReg cannot map {what}: student map "
                                                    f"{s_h}x{s_w} to the teacher's {t_h}x{t_w}")
            self.bn = nn.BatchNorm2d(t_c)
        elif kind == "conv1x1_bn":
            if len(s_shape) != 4 or len(t_shape) != 4:
                raise kd.OptionError("student_tap", f"conv1x1_bn regressor needs 4-D feature maps ({what})")
            self.conv = nn.Conv2d(s_shape[1], t_shape[1], 1, bias=False)
            self.bn = nn.BatchNorm2d(t_shape[1])
        else:
            raise kd.OptionError("regressor", f"unknown regressor '{kind}'")

    def hint(self, v, u):
        """The hint term of the student's guided tap v against the teacher's hint tap u."""
        # regressor forms (2/2): how r(v) meets u.
        if self.kind == "linear":
            return hint_mse(self.linear(v.flatten(1)), u.flatten(1))
        if self.kind == "conv_reg":
            return hint_mse(torch.relu(self.bn(self.conv(v))), u)
        r, t = pool_to_common_size(self.bn(self.conv(v)), u)
        return hint_mse(r, t)


class FitNets(kd.Method):
    """Romero et al. 2015 (Python port of fitnets): hint through a learned regressor; one-stage or two-stage."""

    name = "py_fitnets"
    description = ("Romero et al. 2015: hint from a teacher layer through a learned regressor; "
                   "one-stage or two-stage")
    citation = ("Romero et al. 2015, Sec. 2.2 (Eq. 3, hint loss) and 2.3 (stage-wise training); reference RepDistiller "
                "models/util.py ConvReg, distiller_zoo/FitNet.py HintLoss @ b84f547")
    teachers = (1, 1)

    @dataclass
    class Options:
        mode: str = kd.option("two_stage", choices=("one_stage", "two_stage"),
                              doc="two_stage: hint pre-training then KD")
        student_tap: str = kd.option("block2", doc="student guided layer")
        teacher_tap: str = kd.option("block2", doc="teacher hint layer")
        regressor: str = kd.option(
            "conv_reg", choices=("conv_reg", "conv1x1_bn", "linear"),
            doc="conv_reg: RepDistiller's ConvReg (conv with bias chosen by the maps' sizes, BN, ReLU); "
                "conv1x1_bn: 1x1 conv + BN, the larger map pooled to the smaller; linear: on flattened features")
        hint_epochs: int = kd.option(1, range=(1, 10000), doc="two_stage: epochs of stage 1")
        beta: float = kd.option(1.0, range=(0.0, 1e6), doc="one_stage: weight of the hint term")
        temperature: float = kd.option(4.0, range=(0.05, 100.0), doc="KD temperature T")
        alpha: float = kd.option(0.9, range=(0.0, 1.0), doc="weight of the KD term; CE gets 1 - alpha")

    def __init__(self, opt):
        super().__init__(opt)
        self.two_stage = opt.mode == "two_stage"
        self.regressor = None

    def student_taps(self):
        return ["logits", self.opt.student_tap]

    def teacher_taps(self, i):
        return ["logits", self.opt.teacher_tap]

    def prepare(self, ctx):
        o = self.opt
        # Built on the CPU (the CPU generator the run's seed seeded, as the native module's initialisation uses),
        # then moved to the run's device.
        self.regressor = FitNetsRegressor(o.regressor, tuple(ctx.student[o.student_tap]),
                                          tuple(ctx.teachers[0][o.teacher_tap]), o.student_tap, o.teacher_tap)
        self.regressor.to(ctx.device)
        return self.regressor

    def stages(self):
        if not self.two_stage:
            return [kd.Stage()]
        return [kd.Stage(name="hint", epochs=int(self.opt.hint_epochs), train_until_tap=self.opt.student_tap),
                kd.Stage(name="kd", epochs=0, train_until_tap="")]

    def hint(self, inp):
        return self.regressor.hint(inp.student[self.opt.student_tap], inp.teachers[0][self.opt.teacher_tap])

    def compute(self, inp):
        if self.two_stage and inp.stage == 0:
            return [kd.Term("hint", self.hint(inp), 1.0)]
        o = self.opt
        s = inp.student["logits"]
        alpha = float(o.alpha)
        terms = [kd.Term("ce", F.cross_entropy(s, inp.labels), 1.0 - alpha)]
        if alpha > 0:
            terms.append(kd.Term("kd", soft_kl(s, inp.teachers[0]["logits"], float(o.temperature)), alpha))
        if not self.two_stage:
            terms.append(kd.Term("hint", self.hint(inp), float(o.beta)))
        return terms
