"""RKD reference values from HobbitLong/RepDistiller distiller_zoo/RKD.py (RKDLoss)."""
import torch

import _common as C

torch.set_default_dtype(torch.float64)
RKDLoss = C.repdistiller("RKD").RKDLoss


def run_case(name, B, ds, dt, seed):
    fs = C.randn((B, ds), seed)
    ft = C.randn((B, dt), seed + 1)
    x = fs.clone().requires_grad_(True)
    loss = RKDLoss()(x, ft)  # w_d=25, w_a=50
    loss.backward()
    loss_d = C.scalar(RKDLoss(w_d=1, w_a=0)(fs, ft))
    loss_a = C.scalar(RKDLoss(w_d=0, w_a=1)(fs, ft))
    xd = fs.clone().requires_grad_(True)
    RKDLoss(w_d=1, w_a=0)(xd, ft).backward()
    xa = fs.clone().requires_grad_(True)
    RKDLoss(w_d=0, w_a=1)(xa, ft).backward()
    pd_t = RKDLoss.pdist(ft, squared=False)
    pd_s = RKDLoss.pdist(fs, squared=False)
    off = ~torch.eye(B, dtype=torch.bool)
    checks = {
        "what": "kdbench arithmetic on peer outputs (not peer code) to verify diagonal handling",
        "mean_td_peer_selection_t_d_gt_0": C.scalar(pd_t[pd_t > 0].mean()),
        "mean_td_offdiagonal_only": C.scalar(pd_t[off].mean()),
        "mean_td_including_zero_diagonal": C.scalar(pd_t.mean()),
        "loss_d_if_mean_over_offdiagonal_B(B-1)": loss_d * B * B / (B * (B - 1)),
        "loss_a_if_mean_over_distinct_triplets_B(B-1)(B-2)": loss_a * B ** 3 / (B * (B - 1) * (B - 2)),
    }
    return {"name": name, "hyperparameters": {"w_d": 25, "w_a": 50, "pdist_eps": 1e-12,
                                              "squared": False, "smooth_l1_beta": 1.0},
            "inputs": {"student_emb": C.tolist(fs), "teacher_emb": C.tolist(ft)},
            "outputs": {"loss": C.scalar(loss), "loss_distance_unweighted": loss_d,
                        "loss_angle_unweighted": loss_a,
                        "pdist_student": C.tolist(pd_s), "pdist_teacher": C.tolist(pd_t)},
            "grad": {"student_emb": C.tolist(x.grad), "student_emb_distance_only": C.tolist(xd.grad),
                     "student_emb_angle_only": C.tolist(xa.grad)},
            "independent_checks": checks}


cases = [run_case("B4_s8_t12", 4, 8, 12, 1400), run_case("B6_s8_t12", 6, 8, 12, 1500)]
obj = {
    "provenance": C.provenance(
        "RepDistiller", "distiller_zoo/RKD.py",
        "RKDLoss(w_d, w_a).forward(f_s, f_t); RKDLoss.pdist(e, squared=False, eps=1e-12)", "float64",
        hyperparameters_published={
            "RepDistiller": "--distill rkd -a 0 -b 1 (-r 1): loss = CE + 1*RKDLoss(w_d=25, w_a=50); "
                            "f_s=feat_s[-1], f_t=feat_t[-1] (global-avg-pooled penultimate vectors)",
            "mdistiller": "RKD.DISTANCE_WEIGHT 25, ANGLE_WEIGHT 50, FEAT_WEIGHT 1, PDIST eps 1e-12, "
                          "SQUARED False; pooled_feat"}),
    "more_cases": cases[1:],
}
obj.update({"primary_case": cases[0]["name"]})
for _k, _v in cases[0].items():
    if _k != "name":
        obj[_k] = _v
C.write("rkd", obj)
