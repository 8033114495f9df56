"""Reference values for CRD (RepDistiller crd/criterion.py CRDLoss/ContrastLoss/Embed, crd/memory.py ContrastMemory).

CPU workaround: ContrastMemory.__init__ calls self.multinomial.cuda() (AliasMethod.cuda -> Tensor.cuda()).
During construction only, torch.Tensor.cuda is monkeypatched to identity; the alias tables are only used
when contrast_idx is None (never in train_student.py, which always passes the dataset's sample_idx).
No math is changed.

Setup: n_data=20 (labels y_i = i % 4, i.e. 4 classes x 5 samples), s_dim=6, t_dim=10, feat_dim=8,
nce_k=5, nce_t=0.07, nce_m=0.5; batch 4.
contrast_idx is built like CIFAR100InstanceSample mode='exact': column 0 = the sample's own index,
columns 1..K = np.random.choice(indices of OTHER classes, K, replace=False) (fixed numpy seed 0).
Two consecutive forward calls (step1 sets Z_v1/Z_v2 from its batch; step2 reuses them with the updated
memory). Memory banks are recorded before step1, after step1 and after step2.
"""
import os
import sys
import numpy as np
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.environ.get("KDBENCH_REFS_SRC", "/work/refs/src") + "/RepDistiller")
from _common import tl, state, provenance, write, split_cases
import crd.criterion as CR
import crd.memory as MEM


class Opt:  # the attributes CRDLoss reads from train_student.py's opt
    s_dim = 6; t_dim = 10; feat_dim = 8; nce_k = 5; nce_t = 0.07; nce_m = 0.5; n_data = 20


_cuda = torch.Tensor.cuda
torch.Tensor.cuda = lambda self, *a, **k: self
try:
    torch.manual_seed(0)
    crit = CR.CRDLoss(Opt)   # builds embed_s, embed_t, then ContrastMemory (torch.rand memories)
finally:
    torch.Tensor.cuda = _cuda
w0 = state(crit)

labels = np.arange(Opt.n_data) % 4
rs = np.random.RandomState(0)
def sample_idx(index):
    neg_pool = np.where(labels != labels[index])[0]
    neg = rs.choice(neg_pool, Opt.nce_k, replace=Opt.nce_k > len(neg_pool))
    return np.hstack(([index], neg))

g = torch.Generator().manual_seed(1)
steps = {}
mem_before = {"memory_v1": tl(crit.contrast.memory_v1), "memory_v2": tl(crit.contrast.memory_v2)}
for step, idx_list in [("step1", [3, 6, 9, 12]), ("step2", [6, 0, 17, 3])]:
    idx = torch.tensor(idx_list, dtype=torch.long)
    cidx = torch.tensor(np.stack([sample_idx(i) for i in idx_list]), dtype=torch.long)
    f_s = torch.randn(4, Opt.s_dim, generator=g).relu().requires_grad_(True)
    f_t = torch.randn(4, Opt.t_dim, generator=g).relu()
    crit.zero_grad()
    # intermediate values (embeddings, contrast scores) are captured with forward hooks, because calling
    # the sub-modules again would apply a second memory update
    cap = {}
    h1 = crit.embed_s.register_forward_hook(lambda m, i, o: cap.__setitem__("emb_s", o))
    h2 = crit.embed_t.register_forward_hook(lambda m, i, o: cap.__setitem__("emb_t", o))
    h3 = crit.contrast.register_forward_hook(lambda m, i, o: cap.__setitem__("out", o))
    loss = crit(f_s, f_t, idx, cidx)
    for h in (h1, h2, h3): h.remove()
    loss.sum().backward()
    out_s, out_t = cap["out"]
    steps[step] = {
        "inputs": {"f_s": tl(f_s), "f_t": tl(f_t), "idx": idx_list, "contrast_idx": cidx.tolist()},
        "outputs": {"embed_s": tl(cap["emb_s"]), "embed_t": tl(cap["emb_t"]),
                    "out_s(=out_v1, student emb vs memory_v2)": tl(out_s.squeeze(-1)),
                    "out_t(=out_v2, teacher emb vs memory_v1)": tl(out_t.squeeze(-1)),
                    "s_loss": tl(crit.criterion_s(out_s)), "t_loss": tl(crit.criterion_t(out_t)),
                    "loss": tl(loss), "loss_shape": list(loss.shape),
                    "Z_v1": crit.contrast.params[2].item(), "Z_v2": crit.contrast.params[3].item(),
                    "memory_v1_after": tl(crit.contrast.memory_v1), "memory_v2_after": tl(crit.contrast.memory_v2)},
        "grad": {"f_s": tl(f_s.grad), "embed_t.linear.weight": tl(crit.embed_t.linear.weight.grad),
                 "embed_t.linear.bias": tl(crit.embed_t.linear.bias.grad)},
    }

obj = {
    "provenance": provenance("HobbitLong/RepDistiller", "crd/criterion.py; crd/memory.py", "CRDLoss(opt) -> Embed x2, ContrastMemory, ContrastLoss x2",
                             {k: getattr(Opt, k) for k in ["s_dim", "t_dim", "feat_dim", "nce_k", "nce_t", "nce_m", "n_data"]},
                             {"seed": "torch.manual_seed(0) then CRDLoss(opt) (embed_s Linear, embed_t Linear, memory_v1 rand, memory_v2 rand in that order); inputs Generator seed 1 randn().relu(); contrast_idx numpy RandomState(0) as documented",
                              "cuda_workaround": "torch.Tensor.cuda monkeypatched to identity only while constructing CRDLoss (AliasMethod.cuda in ContrastMemory.__init__)",
                              "labels": labels.tolist(),
                              "note": "params buffer = [K, T, Z_v1, Z_v2, momentum]; Z_v* = -1 until the first forward. Loss is a shape-[1] tensor; backward used loss.sum()."}),
    "weights": {"state_dict_initial": w0},
    "memory_before_step1": mem_before,
}
obj.update(split_cases(steps))
write("crd", obj)
