"""Logit standardization (Sun et al., CVPR 2024) reference values from
sunshangquan/logit-standardization-KD mdistiller/distillers/KD.py and DKD.py
(normalize, kd_loss(..., logit_stand), dkd_loss(..., logit_stand), KD/DKD.forward_train).
"""
import types

import torch
import torch.nn as nn

import _common as C

torch.set_default_dtype(torch.float64)
KDm = C.lskd("KD")
DKDm = C.lskd("DKD")


class Fixed(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, image):
        return self.logits, {}


def grad_of(fn, s):
    x = s.clone().requires_grad_(True)
    loss = fn(x)
    loss.backward()
    return C.scalar(loss), C.tolist(x.grad)


def pop_std_standardize(z):
    # kdbench-computed (NOT peer code): paper-style Z-score with population std, no eps.
    return (z - z.mean(dim=-1, keepdim=True)) / z.std(dim=-1, keepdim=True, unbiased=False)


def run_case(name, B, Cn, base_T, kd_weight, dkd_beta, seed):
    s = C.randn((B, Cn), seed, scale=3.0)
    t = C.randn((B, Cn), seed + 1, scale=5.0)
    g = torch.Generator().manual_seed(seed + 2)
    target = torch.randint(0, Cn, (B,), generator=g)
    alpha, beta = 1.0 * kd_weight, dkd_beta * kd_weight  # tools/train.py --logit-stand
    out, grad = {}, {}
    out["normalize_student"] = C.tolist(KDm.normalize(s))
    out["normalize_teacher"] = C.tolist(KDm.normalize(t))
    out["kd_ls"], grad["kd_ls"] = grad_of(lambda x: KDm.kd_loss(x, t, base_T, True), s)
    out["kd_no_ls"], _ = grad_of(lambda x: KDm.kd_loss(x, t, base_T, False), s)
    out["dkd_ls"], grad["dkd_ls"] = grad_of(
        lambda x: DKDm.dkd_loss(x, t, target, alpha, beta, base_T, True), s)
    out["dkd_ls_tckd"], _ = grad_of(lambda x: DKDm.dkd_loss(x, t, target, 1.0, 0.0, base_T, True), s)
    out["dkd_ls_nckd"], _ = grad_of(lambda x: DKDm.dkd_loss(x, t, target, 0.0, 1.0, base_T, True), s)
    # full distiller forward (CE + weighted KD), as trained
    cfg = types.SimpleNamespace(
        KD=types.SimpleNamespace(TEMPERATURE=base_T, LOSS=types.SimpleNamespace(
            CE_WEIGHT=0.1, KD_WEIGHT=kd_weight)),
        DKD=types.SimpleNamespace(CE_WEIGHT=1.0, ALPHA=alpha, BETA=beta, T=base_T, WARMUP=20),
        EXPERIMENT=types.SimpleNamespace(LOGIT_STAND=True))
    _, l = KDm.KD(Fixed(s), Fixed(t), cfg).forward_train(image=None, target=target)
    out["KD_forward_train"] = {k: C.scalar(v) for k, v in l.items()}
    for ep in (1, 240):
        _, l = DKDm.DKD(Fixed(s), Fixed(t), cfg).forward_train(image=None, target=target, epoch=ep)
        out[f"DKD_forward_train_epoch{ep}"] = {k: C.scalar(v) for k, v in l.items()}
    # kdbench-computed paper-form variants (population std, no eps), reusing the peer's KL
    sp, tp = pop_std_standardize(s), pop_std_standardize(t)
    indep = {
        "what": "NOT peer output: peer kd_loss/dkd_loss with logit_stand=False applied to logits "
                "standardized by kdbench with population std (unbiased=False) and no 1e-7 eps "
                "(the paper's sigma); for a form: paper option",
        "kd_ls_population_std": C.scalar(KDm.kd_loss(sp, tp, base_T, False)),
        "dkd_ls_population_std": C.scalar(DKDm.dkd_loss(sp, tp, target, alpha, beta, base_T, False)),
    }
    return {"name": name,
            "hyperparameters": {"base_temperature": base_T, "kd_weight": kd_weight,
                                "KD": {"CE_WEIGHT": 0.1, "KD_WEIGHT": kd_weight,
                                       "TEMPERATURE": base_T},
                                "DKD": {"CE_WEIGHT": 1.0, "ALPHA": alpha, "BETA": beta, "T": base_T,
                                        "WARMUP": 20}},
            "inputs": {"student_logits": C.tolist(s), "teacher_logits": C.tolist(t),
                       "target": C.tolist(target)},
            "outputs": out,
            "grad": {"student_logits_kd_ls": grad["kd_ls"], "student_logits_dkd_ls": grad["dkd_ls"]},
            "independent_checks": indep,
            "note": "kd_ls = kd_loss(s,t,T,True) (unweighted: includes T^2, batch mean, NOT kd_weight); "
                    "dkd_ls = dkd_loss(s,t,target,alpha=kd_weight*1, beta=kd_weight*BETA, T, True); "
                    "dkd_ls_tckd/nckd use (1,0)/(0,1)."}


cases = [run_case("res32x4_res8x4_T2_w9_B4_C5", 4, 5, 2.0, 9.0, 8.0, 1000),
         run_case("T3_w9_dkdbeta2_B4_C10", 4, 10, 3.0, 9.0, 2.0, 1100)]
obj = {
    "provenance": C.provenance(
        "logit-standardization-KD", "mdistiller/distillers/KD.py, mdistiller/distillers/DKD.py",
        "normalize(logit); kd_loss(s, t, temperature, logit_stand); "
        "dkd_loss(s, t, target, alpha, beta, temperature, logit_stand); KD/DKD.forward_train",
        "float64",
        hyperparameters_published={
            "tools/train.py --logit-stand --base-temp B --kd-weight W":
                "KD: KD_WEIGHT=W, TEMPERATURE=B (CE_WEIGHT stays 0.1); "
                "DKD: ALPHA*=W, BETA*=W, T=B (CE_WEIGHT 1.0, WARMUP 20 unchanged)",
            "README default command": "--base-temp 2 --kd-weight 9",
            "per-pair values (logs/ file names KD_TYPE,T,S,base_temp,kd_weight[,dkd_beta])": {
                "KD": {"resnet32x4-resnet8x4": [2, 9], "vgg13-vgg8": [3, 9],
                       "wrn_40_2-wrn_40_1": [2, 9], "wrn_40_2-wrn_16_2": [2, 9],
                       "resnet56-resnet20": [2, 9], "resnet110-resnet32": [2, 9],
                       "resnet110-resnet20": [4, 12], "resnet32x4-ShuffleV2": [2, 9],
                       "resnet32x4-wrn_16_2": [3, 9], "resnet32x4-wrn_40_2": [3, 9],
                       "wrn_40_2-resnet8x4": [2, 9], "wrn_40_2-MobileNetV2": [3, 9],
                       "vgg13-MobileNetV2": [3, 9], "ResNet50-MobileNetV2": [3, 1]},
                "DKD": {"resnet32x4-resnet8x4": [2, 9, "8.0 default"], "vgg13-vgg8": [2, 15, 2.0],
                        "wrn_40_2-wrn_40_1": [2, 12, 2.0], "wrn_40_2-wrn_16_2": [2, 12, 2.0],
                        "resnet56-resnet20": [3, 18, 2.0], "resnet110-resnet32": [2, 15, 2.0],
                        "resnet110-resnet20": [2, 15, 2.0], "resnet32x4-ShuffleV2": [2, 9, "8.0 default"],
                        "resnet32x4-wrn_16_2": [2, 9, 2.0], "resnet32x4-wrn_40_2": [2, 9, 8.0],
                        "wrn_40_2-resnet8x4": [2, 18, 2.0], "wrn_40_2-MobileNetV2": [2, 15, 2.0],
                        "vgg13-MobileNetV2": [3, 9, 2.0], "ResNet50-MobileNetV2": [2, 15, 2.0]}},
        }),
    "more_cases": cases[1:],
}
obj.update({"primary_case": cases[0]["name"]})
for _k, _v in cases[0].items():
    if _k != "name":
        obj[_k] = _v
C.write("logit_standardization", obj)
