"""NST reference values from HobbitLong/RepDistiller distiller_zoo/NST.py (NSTLoss)."""
import torch

import _common as C

torch.set_default_dtype(torch.float64)
NSTLoss = C.repdistiller("NST").NSTLoss


def run_case(name, s_shape, t_shape, seed, with_grad=True):
    fs = C.randn(s_shape, seed).relu()
    ft = C.randn(t_shape, seed + 1).relu()
    x = fs.clone().requires_grad_(True)
    loss = NSTLoss().nst_loss(x, ft)
    loss.backward()
    d = {"name": name, "inputs": {"student_feat": C.tolist(fs), "teacher_feat": C.tolist(ft)},
         "outputs": {"loss": C.scalar(loss)}}
    if with_grad:
        d["grad"] = {"student_feat": C.tolist(x.grad)}
    return d


cases = [run_case("equal_s4x3x4x4_t4x6x4x4", (4, 3, 4, 4), (4, 6, 4, 4), 1800),
         run_case("student_larger_s2x3x8x8_t2x4x4x4", (2, 3, 8, 8), (2, 4, 4, 4), 1900),
         run_case("teacher_larger_s2x3x4x4_t2x4x8x8", (2, 3, 4, 4), (2, 4, 8, 8), 2000)]
g_s = [torch.tensor(c["inputs"]["student_feat"]) for c in cases]
g_t = [torch.tensor(c["inputs"]["teacher_feat"]) for c in cases]
multi = [C.scalar(v) for v in NSTLoss()(g_s, g_t)]
obj = {
    "provenance": C.provenance(
        "RepDistiller", "distiller_zoo/NST.py", "NSTLoss().forward(g_s, g_t) -> list; "
        "NSTLoss().nst_loss(f_s, f_t) (full_loss=True branch)", "float64",
        hyperparameters_published={
            "RepDistiller": "--distill nst -a 0 -b 50 (-r 1); g_s=feat_s[1:-1], g_t=feat_t[1:-1] "
                            "(outputs of every residual stage, post-ReLU), losses summed",
            "mdistiller": "NST.LOSS.FEAT_WEIGHT 50, CE_WEIGHT 1; feats[1:]"}),
    "more_cases": cases[1:],
    "multi_layer": {"pairs": "primary, more_cases[0], more_cases[1] in order", "per_pair": multi, "sum": sum(multi)},
}
obj.update({"primary_case": cases[0]["name"]})
for _k, _v in cases[0].items():
    if _k != "name":
        obj[_k] = _v
C.write("nst", obj)
