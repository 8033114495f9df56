"""PKT reference values from HobbitLong/RepDistiller distiller_zoo/PKT.py
(PKT.cosine_similarity_loss, eps=1e-7)."""
import torch

import _common as C

torch.set_default_dtype(torch.float64)
PKT = C.repdistiller("PKT").PKT


def paper_form(fs, ft, eps=0.0):
    # kdbench-computed (NOT peer code): Passalis & Tefas form -- cosine kernel (1+cos)/2,
    # conditional probabilities normalised over k != i, KL summed over pairs i != j.
    def cond(f):
        fn = f / f.norm(dim=1, keepdim=True)
        K = (fn @ fn.t() + 1.0) / 2.0
        K = K * (1 - torch.eye(f.shape[0]))
        return K / K.sum(dim=1, keepdim=True)
    p, q = cond(ft), cond(fs)
    off = ~torch.eye(fs.shape[0], dtype=torch.bool)
    return float((p[off] * torch.log(p[off] / q[off])).sum())


def run_case(name, B, ds, dt, seed):
    fs = C.randn((B, ds), seed)
    ft = C.randn((B, dt), seed + 1)
    x = fs.clone().requires_grad_(True)
    loss = PKT()(x, ft)
    loss.backward()
    return {"name": name, "inputs": {"student_emb": C.tolist(fs), "teacher_emb": C.tolist(ft)},
            "outputs": {"loss": C.scalar(loss)}, "grad": {"student_emb": C.tolist(x.grad)},
            "independent_checks": {
                "what": "NOT peer output: paper form (diagonal excluded from the normalisation and "
                        "the KL, sum over i!=j, no eps), computed by kdbench for a form: paper option",
                "paper_form_loss": paper_form(fs, ft)}}


cases = [run_case("B4_s8_t12", 4, 8, 12, 1600), run_case("B6_s8_t12", 6, 8, 12, 1700)]
obj = {
    "provenance": C.provenance(
        "RepDistiller", "distiller_zoo/PKT.py", "PKT().forward(f_s, f_t) = "
        "PKT.cosine_similarity_loss(output_net=f_s, target_net=f_t, eps=1e-7)", "float64",
        hyperparameters_published={
            "RepDistiller": "--distill pkt -a 0 -b 30000 (-r 1); f_s=feat_s[-1], f_t=feat_t[-1] "
                            "(pooled penultimate vectors)",
            "mdistiller": "PKT.LOSS.FEAT_WEIGHT 30000, CE_WEIGHT 1; pooled_feat"}),
    "more_cases": cases[1:],
}
obj.update({"primary_case": cases[0]["name"]})
for _k, _v in cases[0].items():
    if _k != "name":
        obj[_k] = _v
C.write("pkt", obj)
