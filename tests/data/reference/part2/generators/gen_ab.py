"""Reference values for AB (RepDistiller distiller_zoo/AB.py ABLoss + models/util.py Connector/ConvReg).

Mirrors the init stage (helper/pretrain.py, distill='abound'):
    g_s = Connector(s_shapes, t_shapes)(feat_s_preact[1:-1]);  g_t = feat_t_preact[1:-1]
    loss = sum(ABLoss(len(feat_s[1:-1]))(g_s, g_t))
Connector in TRAIN mode (pretrain.py calls init_modules.train(); BN uses batch statistics).
Three layers (each exercising a ConvReg branch of the peer):
  L0: s [2,4,4,4] -> t [2,8,4,4]   (s_H >= t_H: Conv2d kernel (1+s_H-t_H)=1x1, bias) + BN
  L1: s [2,4,4,4] -> t [2,6,2,2]   (s_H == 2 t_H: Conv2d 3x3 stride 2 pad 1, bias) + BN
  L2: s [2,4,2,2] -> t [2,4,2,2]   (same C and H: identity nn.Sequential())
ConvReg(use_relu=False) => conv -> bn (no ReLU).
Also a direct ABLoss case on raw tensors (no connector), feat_num=2, margin=1.0.
"""
import os
import sys, types
import torch
import torch.nn as nn
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import tl, state, provenance, write, load_by_path, split_cases, SRC

AB = load_by_path("rd_ab", f"{SRC}/RepDistiller/distiller_zoo/AB.py")
UT = load_by_path("rd_models_util", f"{SRC}/RepDistiller/models/util.py")

s_shapes = [torch.Size([2, 4, 4, 4]), torch.Size([2, 4, 4, 4]), torch.Size([2, 4, 2, 2])]
t_shapes = [torch.Size([2, 8, 4, 4]), torch.Size([2, 6, 2, 2]), torch.Size([2, 4, 2, 2])]
torch.manual_seed(0)
conn = UT.Connector(s_shapes, t_shapes)
# non-trivial BN affine params (default would be 1/0)
with torch.no_grad():
    for m in conn.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.5)
conn.train()
w_init = state(conn)

crit = AB.ABLoss(len(s_shapes))  # margin=1.0
g = torch.Generator().manual_seed(1)
fs = [torch.randn(s, generator=g).requires_grad_(True) for s in s_shapes]  # pre-ReLU student feats
ft = [torch.randn(t, generator=g) for t in t_shapes]                      # pre-ReLU teacher feats
g_s = conn(fs)
for x in g_s:
    x.retain_grad()
losses = crit(g_s, ft)
loss = sum(losses)
loss.backward()

cases = {"connector_init_stage": {
    "inputs": {"feat_s_preact": [tl(x) for x in fs], "feat_t_preact": [tl(x) for x in ft]},
    "outputs": {"connector_out": [tl(x) for x in g_s], "loss_group": [tl(l) for l in losses], "loss": tl(loss),
                "bn_running_after_one_forward": {k: v for k, v in state(conn).items() if "running" in k}},
    "grad": {"feat_s_preact": [tl(x.grad) for x in fs], "connector_out": [tl(x.grad) for x in g_s]},
}}

# direct ABLoss on raw tensors, feat_num=2, margin 1.0: exercises boundaries with values in [-2,2]
crit2 = AB.ABLoss(2, margin=1.0)
a = [torch.linspace(-2, 2, 2 * 3 * 2 * 2).view(2, 3, 2, 2).requires_grad_(True),
     (torch.randn(2, 2, 2, 2, generator=g) * 1.5).requires_grad_(True)]
b = [torch.randn(2, 3, 2, 2, generator=g), torch.randn(2, 2, 2, 2, generator=g)]
l2 = crit2(a, b)
sum(l2).backward()
cases["abloss_direct"] = {
    "inputs": {"source": [tl(x) for x in a], "target": [tl(x) for x in b], "feat_num": 2, "margin": 1.0},
    "outputs": {"loss_group": [tl(l) for l in l2], "w": crit2.w},
    "grad": {"source": [tl(x.grad) for x in a]},
}

obj = {
    "provenance": provenance("HobbitLong/RepDistiller", "distiller_zoo/AB.py; models/util.py", "ABLoss; Connector(ConvReg use_relu=False)",
                             {"feat_num": 3, "margin": 1.0, "s_shapes": [list(s) for s in s_shapes],
                              "t_shapes": [list(t) for t in t_shapes], "connector_mode": "train"},
                             {"seed": "torch.manual_seed(0) before Connector(); BN weight U(0.5,1.5), bias N(0,0.5); inputs Generator seed 1",
                              "total": "loss = sum(loss_group) as in helper/pretrain.py"}),
    "weights": {"connector_state_dict_before_forward": w_init, "ab_w": crit.w},
}
obj.update(split_cases(cases))
write("ab", obj)
