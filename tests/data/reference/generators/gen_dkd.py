"""DKD reference values from megvii-research/mdistiller mdistiller/distillers/DKD.py.

Calls the peer's dkd_loss (TCKD/NCKD split obtained by calling it with
(alpha,beta)=(1,0) and (0,1)), its gradients w.r.t. the student logits, and the
peer's DKD.forward_train (CE + warm-up factor min(epoch/warmup, 1)) with stand-in
student/teacher modules that just return fixed logits.
"""
import types

import torch
import torch.nn as nn

import _common as C

torch.set_default_dtype(torch.float64)
dkd_mod = C.mdistiller("DKD")
dkd_loss = dkd_mod.dkd_loss
DistillKL = C.repdistiller("KD").DistillKL


class Fixed(nn.Module):
    """Stand-in network: ignores the image and returns (logits, features)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, image):
        return self.logits, {}


def run_case(name, B, Cn, T, alpha, beta, seed):
    s = C.randn((B, Cn), seed, scale=3.0)
    t = C.randn((B, Cn), seed + 1, scale=5.0)
    g = torch.Generator().manual_seed(seed + 2)
    target = torch.randint(0, Cn, (B,), generator=g)
    out, grad = {}, {}
    for term, (a, b) in {"tckd": (1.0, 0.0), "nckd": (0.0, 1.0), "dkd": (alpha, beta)}.items():
        x = s.clone().requires_grad_(True)
        loss = dkd_loss(x, t, target, a, b, T)
        loss.backward()
        out[term] = C.scalar(loss)
        grad[term] = C.tolist(x.grad)
    # per-sample decomposition check (paper Eq. KD = TCKD + (1 - p_t^T) NCKD), using only
    # peer functions: dkd_loss on single rows, and RepDistiller's DistillKL on single rows.
    per = []
    for i in range(B):
        tc = C.scalar(dkd_loss(s[i:i + 1], t[i:i + 1], target[i:i + 1], 1.0, 0.0, T))
        nc = C.scalar(dkd_loss(s[i:i + 1], t[i:i + 1], target[i:i + 1], 0.0, 1.0, T))
        kd = C.scalar(DistillKL(T)(s[i:i + 1], t[i:i + 1]))
        pt = float(torch.softmax(t[i] / T, 0)[target[i]])
        per.append({"tckd": tc, "nckd": nc, "classical_kd_T2": kd, "teacher_p_gt": pt,
                    "tckd_plus_(1-p_gt)*nckd": tc + (1 - pt) * nc})
    return {
        "name": name,
        "note": "outputs.tckd = dkd_loss(alpha=1,beta=0), outputs.nckd = dkd_loss(alpha=0,beta=1), "
                "outputs.dkd = dkd_loss(alpha,beta of the case); all include T^2 and /B",
        "per_sample_decomposition_check": per,
        "hyperparameters": {"temperature": T, "alpha": alpha, "beta": beta},
        "inputs": {"student_logits": C.tolist(s), "teacher_logits": C.tolist(t),
                   "target": C.tolist(target)},
        "outputs": out,
        "grad": {"student_logits": grad["dkd"], "student_logits_tckd": grad["tckd"],
                 "student_logits_nckd": grad["nckd"]},
    }


cases = [
    run_case("cifar_default_B4_C5", 4, 5, 4.0, 1.0, 8.0, 100),
    run_case("cifar_beta2_B4_C10", 4, 10, 4.0, 1.0, 2.0, 200),
    run_case("imagenet_r34_r18_B4_C5", 4, 5, 1.0, 1.0, 0.5, 300),
]

# --- warm-up through the peer's DKD.forward_train -------------------------------------
c0 = cases[0]
s = torch.tensor(c0["inputs"]["student_logits"])
t = torch.tensor(c0["inputs"]["teacher_logits"])
target = torch.tensor(c0["inputs"]["target"])
cfg = types.SimpleNamespace(DKD=types.SimpleNamespace(CE_WEIGHT=1.0, ALPHA=1.0, BETA=8.0, T=4.0,
                                                      WARMUP=20))
distiller = dkd_mod.DKD(Fixed(s), Fixed(t), cfg)
warm = []
for epoch in [1, 2, 10, 19, 20, 21, 240]:
    _, losses = distiller.forward_train(image=None, target=target, epoch=epoch)
    warm.append({"epoch": epoch, "loss_ce": C.scalar(losses["loss_ce"]),
                 "loss_kd": C.scalar(losses["loss_kd"]),
                 "trainer_total": C.scalar(sum(l.mean() for l in losses.values()))})

obj = {
    "provenance": C.provenance(
        "mdistiller", "mdistiller/distillers/DKD.py",
        "dkd_loss(logits_student, logits_teacher, target, alpha, beta, temperature); "
        "DKD.forward_train(image, target, epoch=...)",
        "float64",
        also_uses={"repo": "HobbitLong/RepDistiller", "commit": C.commit_of("RepDistiller"),
                   "file": "distiller_zoo/KD.py", "function": "DistillKL(T)",
                   "for": "per_sample_decomposition_check.classical_kd_T2 only"},
        hyperparameters_published={
            "cifar100 (mdistiller/engine/cfg.py defaults)": {"CE_WEIGHT": 1.0, "ALPHA": 1.0,
                                                              "BETA": 8.0, "T": 4.0, "WARMUP": 20},
            "cifar100 BETA overrides (configs/cifar100/dkd/*.yaml)": {
                "res110_res32": 2.0, "res56_res20": 2.0, "vgg13_mv2": 6.0, "vgg13_vgg8": 6.0,
                "wrn40_2_wrn_16_2": 6.0, "wrn40_2_wrn_40_1": 6.0,
                "res32x4_res8x4/res32x4_shuv1/res32x4_shuv2/res50_mv2/wrn40_2_shuv1": 8.0},
            "imagenet r34_r18": {"CE_WEIGHT": 1.0, "ALPHA": 1.0, "BETA": 0.5, "T": 1.0, "WARMUP": 1},
            "imagenet r50_mv1": {"CE_WEIGHT": 1.0, "ALPHA": 1.0, "BETA": 2.0, "T": 1.0, "WARMUP": 1},
        },
        epoch_semantics="epoch is the 1-based integer epoch index passed by the trainer "
                        "(engine/trainer.py: epoch = 1..EPOCHS, constant within an epoch); "
                        "factor = min(epoch/WARMUP, 1.0) -> 0.05 at epoch 1, 1.0 from epoch 20 on",
    ),
    "more_cases": cases[1:],
    "warmup": {"case": c0["name"], "cfg": {"CE_WEIGHT": 1.0, "ALPHA": 1.0, "BETA": 8.0, "T": 4.0,
                                             "WARMUP": 20},
               "values": warm,
               "note": "loss_ce = CE_WEIGHT*cross_entropy(student, target) (mean over batch); "
                       "loss_kd = min(epoch/WARMUP,1)*dkd_loss; trainer_total = sum of the two"},
}
obj.update({"primary_case": cases[0]["name"]})
for _k, _v in cases[0].items():
    if _k != "name":
        obj[_k] = _v
C.write("dkd", obj)
