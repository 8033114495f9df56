"""CC reference values from HobbitLong/RepDistiller distiller_zoo/CC.py (Correlation)."""
import torch

import _common as C

torch.set_default_dtype(torch.float64)
Correlation = C.repdistiller("CC").Correlation


def run_case(name, fs, ft):
    x = fs.clone().requires_grad_(True)
    y = ft.clone().requires_grad_(True)
    loss = Correlation()(x, y)
    loss.backward()
    return {"name": name, "inputs": {"student_emb": C.tolist(fs), "teacher_emb": C.tolist(ft)},
            "outputs": {"loss": C.scalar(loss)},
            "grad": {"student_emb": C.tolist(x.grad), "teacher_emb": C.tolist(y.grad)}}


fs = C.randn((4, 8), 2100)
ft = C.randn((4, 8), 2101)
perm = torch.tensor([2, 0, 3, 1])
cases = [run_case("B4_D8", fs, ft),
         run_case("B4_D8_same_rows_permuted_[2,0,3,1]", fs[perm], ft[perm]),
         run_case("B6_D8", C.randn((6, 8), 2200), C.randn((6, 8), 2201))]
obj = {
    "provenance": C.provenance(
        "RepDistiller", "distiller_zoo/CC.py", "Correlation().forward(f_s, f_t)", "float64",
        hyperparameters_published={
            "RepDistiller": "--distill correlation -a 0 -b 0.02 (-r 1); f_s = LinearEmbed(feat_s[-1]), "
                            "f_t = LinearEmbed(feat_t[-1]) (both nn.Linear(dim, feat_dim=128), both "
                            "trainable, in trainable_list), so gradient flows into the teacher-side "
                            "embed too (teacher network itself is frozen)"}),
    "more_cases": cases[1:],
    "note": "more_cases[0] holds the same samples as the primary case in another batch order: the loss differs, "
            "showing the order dependence. grad.teacher_emb is recorded because the teacher-side "
            "LinearEmbed is trained in RepDistiller.",
}
obj.update({"primary_case": cases[0]["name"]})
for _k, _v in cases[0].items():
    if _k != "name":
        obj[_k] = _v
C.write("cc", obj)
