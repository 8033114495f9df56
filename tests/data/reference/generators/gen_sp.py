"""SP reference values from HobbitLong/RepDistiller distiller_zoo/SP.py (Similarity)."""
import torch

import _common as C

torch.set_default_dtype(torch.float64)
Similarity = C.repdistiller("SP").Similarity


def run_case(name, s_shape, t_shape, seed):
    fs = C.randn(s_shape, seed).relu()  # post-ReLU like RepDistiller feat[-2]
    ft = C.randn(t_shape, seed + 1).relu()
    x = fs.clone().requires_grad_(True)
    out = Similarity()([x], [ft])
    loss = sum(out)
    loss.backward()
    return {"name": name, "inputs": {"student_feat": C.tolist(fs), "teacher_feat": C.tolist(ft)},
            "outputs": {"loss": C.scalar(loss), "forward_list_shapes": [list(o.shape) for o in out]},
            "grad": {"student_feat": C.tolist(x.grad)}}


cases = [run_case("equal_spatial_s4x3x4x4_t4x6x4x4", (4, 3, 4, 4), (4, 6, 4, 4), 1200),
         run_case("diff_spatial_s4x4x4x4_t4x6x2x2", (4, 4, 4, 4), (4, 6, 2, 2), 1300)]
# multi-layer: RepDistiller returns one loss per pair; the training loop sums them
a, b = cases[0]["inputs"], cases[1]["inputs"]
g_s = [torch.tensor(a["student_feat"]), torch.tensor(b["student_feat"])]
g_t = [torch.tensor(a["teacher_feat"]), torch.tensor(b["teacher_feat"])]
multi = [C.scalar(v) for v in Similarity()(g_s, g_t)]
obj = {
    "provenance": C.provenance(
        "RepDistiller", "distiller_zoo/SP.py", "Similarity().forward(g_s, g_t) -> list; "
        "similarity_loss(f_s, f_t)", "float64",
        hyperparameters_published={
            "RepDistiller": "--distill similarity -a 0 -b 3000 (-r 1): loss = CE + 3000*sum(list); "
                            "layers: g_s=[feat_s[-2]], g_t=[feat_t[-2]] (output of the last conv stage, "
                            "post-ReLU, before avgpool)",
            "mdistiller": "SP.LOSS.FEAT_WEIGHT 3000, CE_WEIGHT 1; feats[-1] (same tensor)"}),
    "more_cases": cases[1:],
    "multi_layer": {"pairs": "[primary, more_cases[0]]", "per_pair": multi, "sum": sum(multi)},
}
obj.update({"primary_case": cases[0]["name"]})
for _k, _v in cases[0].items():
    if _k != "name":
        obj[_k] = _v
C.write("sp", obj)
