"""AT reference values from HobbitLong/RepDistiller distiller_zoo/AT.py (Attention, p=2)."""
import torch

import _common as C

torch.set_default_dtype(torch.float64)
Attention = C.repdistiller("AT").Attention


def run_case(name, s_shape, t_shape, seed, maps=False):
    fs = C.randn(s_shape, seed).relu()
    ft = C.randn(t_shape, seed + 1).relu()
    x = fs.clone().requires_grad_(True)
    loss = Attention().at_loss(x, ft)
    loss.backward()
    d = {"name": name, "inputs": {"student_feat": C.tolist(fs), "teacher_feat": C.tolist(ft)},
         "outputs": {"loss": C.scalar(loss)}, "grad": {"student_feat": C.tolist(x.grad)}}
    if maps:
        d["outputs"]["at_student"] = C.tolist(Attention().at(fs))
        d["outputs"]["at_teacher"] = C.tolist(Attention().at(ft))
    return d


cases = [run_case("equal_s4x3x4x4_t4x6x4x4", (4, 3, 4, 4), (4, 6, 4, 4), 2300, maps=True),
         run_case("student_larger_s2x3x8x8_t2x6x4x4", (2, 3, 8, 8), (2, 6, 4, 4), 2400),
         run_case("teacher_larger_s2x4x4x4_t2x6x8x8", (2, 4, 4, 4), (2, 6, 8, 8), 2500)]
g_s = [torch.tensor(c["inputs"]["student_feat"]) for c in cases[1:]]
g_t = [torch.tensor(c["inputs"]["teacher_feat"]) for c in cases[1:]]
multi = [C.scalar(v) for v in Attention()(g_s, g_t)]
obj = {
    "provenance": C.provenance(
        "RepDistiller", "distiller_zoo/AT.py", "Attention(p=2).forward(g_s, g_t) -> list; "
        "Attention().at_loss(f_s, f_t); Attention().at(f)", "float64",
        hyperparameters_published={
            "RepDistiller": "--distill attention -a 0 -b 1000 (-r 1); g_s=feat_s[1:-1], "
                            "g_t=feat_t[1:-1] (every residual stage output, post-ReLU), summed",
            "mdistiller": "AT.P 2, AT.LOSS.FEAT_WEIGHT 1000, CE_WEIGHT 1; feats[1:]"}),
    "more_cases": cases[1:],
    "multi_layer": {"pairs": "more_cases[0], more_cases[1]", "per_pair": multi, "sum": sum(multi)},
    "note": "different-size cases use batch 2 and 4/6 channels (instead of 4x8x8x8 / 4x16x4x4) to "
            "keep the file small; the pooling path exercised is the same.",
}
obj.update({"primary_case": cases[0]["name"]})
for _k, _v in cases[0].items():
    if _k != "name":
        obj[_k] = _v
C.write("attention", obj)
