"""Reference values for FSP (RepDistiller distiller_zoo/FSP.py, class FSP).

RepDistiller feeds feat[:-1] (stem output + the 3 stage outputs; post-ReLU) of student and teacher;
FSP matrices are built for consecutive pairs (g[i], g[i+1]); the larger spatial map of each pair is
adaptive-avg-pooled to the smaller one. Channel counts must match between student and teacher
(the constructor raises ValueError otherwise).
Case "chain": 4 maps  [2,3,4,4] -> [2,4,4,4] -> [2,5,2,2] -> [2,4,4,4]
   pair0: same size; pair1: bottom (4x4) pooled to 2x2; pair2: top (4x4) pooled to 2x2.
Outputs: the peer's compute_fsp matrices ([B, C_top, C_bot]) for both sides, loss_group, sum, grads.
"""
import os
import sys
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import tl, provenance, write, load_by_path, split_cases, SRC

FSPm = load_by_path("rd_fsp", f"{SRC}/RepDistiller/distiller_zoo/FSP.py")

shapes = [(2, 3, 4, 4), (2, 4, 4, 4), (2, 5, 2, 2), (2, 4, 4, 4)]
g = torch.Generator().manual_seed(1)
gs = [torch.randn(s, generator=g).relu().requires_grad_(True) for s in shapes]
gt = [torch.randn(s, generator=g).relu() for s in shapes]
crit = FSPm.FSP([torch.Size(s) for s in shapes], [torch.Size(s) for s in shapes])
s_fsp = crit.compute_fsp(gs)
t_fsp = crit.compute_fsp(gt)
loss_group = crit(gs, gt)
loss = sum(loss_group)
loss.backward()

# channel-mismatch check (documented behaviour)
try:
    FSPm.FSP([torch.Size((2, 3, 4, 4))], [torch.Size((2, 6, 4, 4))])
    mismatch = "no error"
except ValueError as e:
    mismatch = "ValueError: " + str(e)

cases = {"chain": {
    "inputs": {"g_s": [tl(x) for x in gs], "g_t": [tl(x) for x in gt]},
    "outputs": {"fsp_s": [tl(x) for x in s_fsp], "fsp_t": [tl(x) for x in t_fsp],
                "fsp_shape_note": "[B, C_top(g[i+1]), C_bot(g[i])]",
                "loss_group": [tl(l) for l in loss_group], "loss": tl(loss)},
    "grad": {"g_s": [tl(x.grad) for x in gs]},
}}
obj = {
    "provenance": provenance("HobbitLong/RepDistiller", "distiller_zoo/FSP.py", "FSP (forward, compute_fsp, compute_loss)",
                             {"s_shapes": [list(s) for s in shapes], "t_shapes": [list(s) for s in shapes]},
                             {"seed": "Generator seed 1, randn().relu()", "total": "loss = sum(loss_group) as in helper/pretrain.py",
                              "channel_mismatch_behaviour": mismatch}),
    "weights": {},
}
obj.update(split_cases(cases))
write("fsp", obj)
