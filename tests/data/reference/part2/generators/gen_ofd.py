"""Reference values for OFD (clovaai/overhaul-distillation CIFAR-100/distiller.py).

Runs the peer's get_margin_from_BN, build_feature_connector, distillation_loss and the full
Distiller.forward with stub teacher/student nets exposing the methods Distiller uses
(get_channel_num, get_bn_before_relu, extract_feature(x, preReLU=True)) and returning fixed features.
scipy (needed by distiller.py for norm.cdf) is installed outside the shared venv in
/root/.cache/kdbench/part2-pylib and appended to sys.path.

Channels: student [2,3,4] -> teacher [3,4,5]; spatial 4x4, 2x2, 1x1; batch 2.
Teacher BN (the BN before ReLU whose affine params define the margin) has hand-picked channels to hit both
branches of get_margin_from_BN (cdf(-m/s) > 0.001 -> E[x | x<0]; else -3*|s|) and a negative gamma.
Distiller (and so the connectors' BN) in TRAIN mode, as train_with_distillation.py (d_net.train()).
Trainer scaling recorded separately: loss = CE + loss_distill.sum() / batch_size / 1000 (CIFAR-100).
"""
import os
import sys
import torch
import torch.nn as nn
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.environ.get("KDBENCH_SCIPY_PATH", "/root/.cache/kdbench/part2-pylib"))
from _common import tl, state, provenance, write, load_by_path, split_cases, SRC

OD = load_by_path("ofd_distiller", f"{SRC}/overhaul-distillation/CIFAR-100/distiller.py")

t_ch, s_ch = [3, 4, 5], [2, 3, 4]
hw = [4, 2, 1]
bn_params = [
    ([1.0, 0.5, 2.0], [0.0, -0.3, 1.0]),
    ([1.0, -0.8, 0.2, 1.5], [4.0, 0.5, -0.1, 0.0]),      # ch0: m/s=4 -> cdf(-4)=3.2e-5 <= 0.001 -> -3s ; ch1 gamma<0
    ([0.3, 1.2, 0.7, 1.0, 2.5], [1.0, -2.0, 0.05, 3.2, 0.4]),  # ch0: m/s=3.33 -> cdf=4.3e-4 -> -3s ; ch3: 3.2 -> 6.9e-4 -> -3s
]
t_bns = []
for c, (w, b) in zip(t_ch, bn_params):
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(w)); bn.bias.copy_(torch.tensor(b))
    t_bns.append(bn)

g = torch.Generator().manual_seed(1)
t_feats = [torch.randn(2, c, h, h, generator=g) * 1.5 for c, h in zip(t_ch, hw)]
s_feats = [torch.randn(2, c, h, h, generator=g).requires_grad_(True) for c, h in zip(s_ch, hw)]
s_out = torch.randn(2, 7, generator=g)


class StubT(nn.Module):
    def __init__(self):
        super().__init__(); self.bns = nn.ModuleList(t_bns)
    def get_channel_num(self): return t_ch
    def get_bn_before_relu(self): return list(self.bns)
    def extract_feature(self, x, preReLU=False):
        assert preReLU
        return list(t_feats), torch.zeros(2, 7)


class StubS(nn.Module):
    def get_channel_num(self): return s_ch
    def extract_feature(self, x, preReLU=False):
        assert preReLU
        return list(s_feats), s_out


torch.manual_seed(0)
d_net = OD.Distiller(StubT(), StubS())   # builds Connectors (normal_(0, sqrt(2/(1*1*t_c))) conv, BN 1/0) and margins
with torch.no_grad():
    for m in d_net.Connectors.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5); m.bias.normal_(0, 0.5)
d_net.train()
w_conn = state(d_net.Connectors)
margins = [getattr(d_net, "margin%d" % (i + 1)) for i in range(3)]

# per-layer pieces through the peer functions (connectors in train mode; separate calls -> running stats
# would be touched twice, so use a deep copy for the per-layer diagnostics)
import copy
diag = copy.deepcopy(d_net.Connectors)
per_layer = []
for i in range(3):
    src = diag[i](s_feats[i].detach())
    per_layer.append({"connector_out": tl(src), "loss_raw": OD.distillation_loss(src, t_feats[i], margins[i]).item(),
                      "divisor": 2 ** (3 - i - 1)})

s_out_, loss_distill = d_net(torch.zeros(1))
batch_size = 2
scaled = loss_distill.sum() / batch_size / 1000
scaled.backward()

# direct distillation_loss on hand-made values covering all mask cases
src = torch.tensor([[[[-2.0, -0.5], [0.3, 1.0]], [[0.2, -1.5], [2.0, -0.1]]]], requires_grad=True)
tgt = torch.tensor([[[[-1.0, -1.0], [-0.2, 0.5]], [[-3.0, -0.4], [1.0, -2.0]]]])
mrg = torch.tensor([-0.8, -1.0]).view(1, 2, 1, 1)
ld = OD.distillation_loss(src, tgt, mrg); ld.backward()

cases = {
    "get_margin_from_BN": {
        "inputs": {"bn_weight": [w for w, _ in bn_params], "bn_bias": [b for _, b in bn_params]},
        "outputs": {"margins": [tl(m.view(-1)) for m in margins], "buffer_shape": [list(m.shape) for m in margins]},
    },
    "distiller_forward": {
        "inputs": {"s_feats_preReLU": [tl(x) for x in s_feats], "t_feats_preReLU": [tl(x) for x in t_feats]},
        "outputs": {"per_layer": per_layer, "loss_distill": tl(loss_distill),
                    "scaled_loss(loss_distill.sum()/batch_size/1000)": tl(scaled)},
        "grad": {"s_feats_preReLU_of_scaled_loss": [tl(x.grad) for x in s_feats]},
    },
    "distillation_loss_direct": {
        "inputs": {"source": tl(src), "target": tl(tgt), "margin": tl(mrg.view(-1))},
        "outputs": {"loss": tl(ld)},
        "grad": {"source": tl(src.grad)},
    },
}
obj = {
    "provenance": provenance("clovaai/overhaul-distillation", "CIFAR-100/distiller.py",
                             "get_margin_from_BN, build_feature_connector, distillation_loss, Distiller.forward",
                             {"t_channels": t_ch, "s_channels": s_ch, "spatial": hw, "batch": 2, "mode": "train"},
                             {"seed": "torch.manual_seed(0) then Distiller(...) (connector conv normal_ init); connector BN weight U(0.5,1.5), bias N(0,0.5); feats Generator seed 1",
                              "scipy": "scipy 1.17.1 (norm.cdf) from /root/.cache/kdbench/part2-pylib"}),
    "weights": {"connectors_state_dict": w_conn},
}
obj.update(split_cases(cases))
write("ofd", obj)
