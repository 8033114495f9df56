"""DIST reference values from hunto/DIST_KD.

DIST_KD's classification/ directory is a git submodule pinned to
hunto/image_classification_sota@d9662f7d...; the loss used for the published
ImageNet/CIFAR numbers is lib/models/losses/dist_kd.py there (class DIST with tau).
DIST_KD/segmentation/losses/dist_kd.py is an older tau-less variant (not used here).
"""
import subprocess

import torch

import _common as C

torch.set_default_dtype(torch.float64)
m = C.dist_kd()


def run_case(name, B, Cn, tau, beta, gamma, seed):
    s = C.randn((B, Cn), seed, scale=3.0)
    t = C.randn((B, Cn), seed + 1, scale=5.0)
    x = s.clone().requires_grad_(True)
    loss = m.DIST(beta=beta, gamma=gamma, tau=tau)(x, t)
    loss.backward()
    ys, yt = (s / tau).softmax(dim=1), (t / tau).softmax(dim=1)
    out = {
        "loss": C.scalar(loss),
        "inter_class_relation": C.scalar(m.inter_class_relation(ys, yt)),
        "intra_class_relation": C.scalar(m.intra_class_relation(ys, yt)),
        "inter_loss_tau2": C.scalar(tau ** 2 * m.inter_class_relation(ys, yt)),
        "intra_loss_tau2": C.scalar(tau ** 2 * m.intra_class_relation(ys, yt)),
        "pearson_rows": C.tolist(m.pearson_correlation(ys, yt)),
        "pearson_cols": C.tolist(m.pearson_correlation(ys.t(), yt.t())),
    }
    return {"name": name, "hyperparameters": {"tau": tau, "beta": beta, "gamma": gamma},
            "inputs": {"student_logits": C.tolist(s), "teacher_logits": C.tolist(t)},
            "outputs": out, "grad": {"student_logits": C.tolist(x.grad)},
            "note": "loss = DIST(beta,gamma,tau)(z_s,z_t) = beta*tau^2*inter + gamma*tau^2*intra. "
                    "In training, KDLoss multiplies this by kd_loss_weight=2 (ori_loss_weight=1)."}


cases = [
    run_case("cifar_tau4_B4_C5", 4, 5, 4.0, 1.0, 1.0, 400),
    run_case("imagenet_tau1_B4_C5", 4, 5, 1.0, 1.0, 1.0, 500),
    run_case("tau4_B4_C10_beta2_gamma2", 4, 10, 4.0, 2.0, 2.0, 600),
]
sub = C.DIST_SUBMODULE
obj = {
    "provenance": C.provenance(
        "DIST_KD", "classification/lib/models/losses/dist_kd.py (submodule)",
        "DIST(beta, gamma, tau).forward(z_s, z_t); inter_class_relation; intra_class_relation; "
        "pearson_correlation", "float64",
        submodule={"repo": sub["repo"], "commit": sub["commit"],
                   "file": "lib/models/losses/dist_kd.py", "pinned_by": sub["pinned_by"],
                   "note": "dist_kd.py is identical at image_classification_sota HEAD 6f7a70a"},
        hyperparameters_published={
            "cifar100 (configs/strategies/distill/dist_cifar.yaml)": {
                "kd": "dist_t4 -> DIST(beta=1, gamma=1, tau=4)", "ori_loss_weight": 1.0,
                "kd_loss_weight": 2.0, "effective": "CE + 2*(16*inter + 16*intra)"},
            "imagenet baseline (resnet_dist.yaml) and strong (dist_b2.yaml)": {
                "kd": "dist -> DIST(beta=1, gamma=1, tau=1)", "ori_loss_weight": 1.0,
                "kd_loss_weight": 2.0},
        },
    ),
    "more_cases": cases[1:],
}
obj.update({"primary_case": cases[0]["name"]})
for _k, _v in cases[0].items():
    if _k != "name":
        obj[_k] = _v
C.write("dist", obj)
