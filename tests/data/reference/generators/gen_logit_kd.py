"""Hinton KD reference values from HobbitLong/RepDistiller distiller_zoo/KD.py (DistillKL).

Cross-checked against mdistiller's kd_loss (mdistiller/distillers/KD.py), which is the
same quantity written with reduction='none').sum(1).mean().
"""
import torch

import _common as C

torch.set_default_dtype(torch.float64)
DistillKL = C.repdistiller("KD").DistillKL
md_kd_loss = C.mdistiller("KD").kd_loss


def run_case(name, B, Cn, T, seed):
    s = C.randn((B, Cn), seed, scale=3.0)
    t = C.randn((B, Cn), seed + 1, scale=5.0)
    x = s.clone().requires_grad_(True)
    loss = DistillKL(T)(x, t)
    loss.backward()
    return {"name": name, "hyperparameters": {"T": T},
            "inputs": {"student_logits": C.tolist(s), "teacher_logits": C.tolist(t)},
            "outputs": {"loss": C.scalar(loss),
                        "mdistiller_kd_loss_same_inputs": C.scalar(md_kd_loss(s, t, T))},
            "grad": {"student_logits": C.tolist(x.grad)}}


cases = [run_case("T4_B4_C5", 4, 5, 4.0, 700), run_case("T4_B4_C10", 4, 10, 4.0, 800),
         run_case("T1_B4_C5", 4, 5, 1.0, 900)]
obj = {
    "provenance": C.provenance(
        "RepDistiller", "distiller_zoo/KD.py", "DistillKL(T).forward(y_s, y_t)", "float64",
        also_uses={"repo": "megvii-research/mdistiller", "commit": C.commit_of("mdistiller"),
                   "file": "mdistiller/distillers/KD.py", "function": "kd_loss",
                   "for": "outputs.mdistiller_kd_loss_same_inputs"},
        hyperparameters_published={
            "RepDistiller scripts/run_cifar_distill.sh": "--distill kd -r 0.1 -a 0.9 -b 0, kd_T=4 "
                                                         "(loss = 0.1*CE + 0.9*DistillKL(4))",
            "mdistiller cfg.py": {"KD.TEMPERATURE": 4, "CE_WEIGHT": 0.1, "KD_WEIGHT": 0.9},
        }),
    "more_cases": cases[1:],
}
obj.update({"primary_case": cases[0]["name"]})
for _k, _v in cases[0].items():
    if _k != "name":
        obj[_k] = _v
C.write("logit_kd", obj)
