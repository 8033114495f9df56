"""py_dist: DIST, "Knowledge Distillation from A Stronger Teacher" (Huang, You, Wang, Qian & Xu, NeurIPS 2022,
Sec. 3, Eq. 5-10). Relations instead of exact probabilities: with y = softmax(z / tau) and the Pearson correlation

    rho(a, b) = <a - mean a, b - mean b> / (||a - mean a|| ||b - mean b|| + 1e-8),
    inter = tau^2 * (1 - mean_b rho(y_s[b, :], y_t[b, :]))     (each sample's class distribution)
    intra = tau^2 * (1 - mean_c rho(y_s[:, c], y_t[:, c]))     (each class over the batch)
    L = CE + beta * inter + gamma * intra

The same method as kdbench's native ``dist`` (methods/dist.cpp; losses::dist in methods/logit_losses.cpp): terms ce
(1), inter (beta), intra (gamma), the same operations in the same order. Reference code: hunto/DIST_KD 2418f18 ->
hunto/image_classification_sota d9662f7 lib/models/losses/dist_kd.py DIST, with the CIFAR strategy's
kd_loss_weight 2 folded into beta = gamma = 2. kdbench's own code, written from the native C++.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

import kdbench as kd
from kdbench.terms import check_logits as _check_logits


def pearson_rows(a, b):
    """Pearson correlation of each row of a with the same row of b, 1e-8 added to the product of the norms."""
    ac = a - a.mean(1, True)
    bc = b - b.mean(1, True)
    return (ac * bc).sum(1) / (ac.norm(2, 1) * bc.norm(2, 1) + 1e-8)


def dist_terms(s, t, tau):
    """losses::dist: the unweighted (inter, intra)."""
    _check_logits("dist", s, t)
    ys = torch.softmax(s / tau, 1)
    yt = torch.softmax(t / tau, 1)
    inter = (1.0 - pearson_rows(ys, yt).mean()) * (tau * tau)
    intra = (1.0 - pearson_rows(ys.t(), yt.t()).mean()) * (tau * tau)
    return inter, intra


class DIST(kd.Method):
    """Huang et al. 2022 (Python port of dist): CE + beta * inter + gamma * intra Pearson relations, times tau^2."""

    name = "py_dist"
    description = ("Huang et al. 2022: CE + beta * inter-class + gamma * intra-class Pearson relations "
                   "of softmax(z / tau), each times tau^2")
    citation = ("Huang et al., NeurIPS 2022, Sec. 3 (Eq. 5-10); reference hunto/DIST_KD classification "
                "lib/models/losses/dist_kd.py DIST, configs/strategies/distill/dist_cifar.yaml")
    teachers = (1, 1)

    @dataclass
    class Options:
        beta: float = kd.option(2.0, range=(0.0, 1e4), doc="weight of the inter-class relation term (per sample)")
        gamma: float = kd.option(2.0, range=(0.0, 1e4), doc="weight of the intra-class relation term (per class)")
        temperature: float = kd.option(
            4.0, range=(0.05, 100.0),
            doc="softmax temperature tau (4 on CIFAR-100, 1 on ImageNet in the authors' configs)")

    def teacher_taps(self, i):
        return ["logits"]

    def compute(self, inp):
        s = inp.student["logits"]
        inter, intra = dist_terms(s, inp.teachers[0]["logits"], float(self.opt.temperature))
        return [kd.Term("ce", F.cross_entropy(s, inp.labels), 1.0),
                kd.Term("inter", inter, float(self.opt.beta)),
                kd.Term("intra", intra, float(self.opt.gamma))]
