"""Reference values for ReviewKD (dvlab-research/ReviewKD CIFAR-100/model/reviewkd.py: ABF, ReviewKD, hcl).

The full ReviewKD.forward is run with a stub student whose forward(x, is_feat=True) returns fixed
features [f0, f1, f2, f3, f4] (like the repo's CIFAR backbones; f0 is ignored by ReviewKD because
zip() truncates to len(abfs)=4). CPU workaround: ReviewKD.__init__ ends with self.to('cuda'); during
construction only, nn.Module.to is monkeypatched to return self when asked for 'cuda'. No math changed.

in_channels=[2,3,4,4], out_channels=[3,4,5,5], shapes=[1,2,4,8] (deepest first, like the repo's
[1,8,16,32] lists), out_shapes=None (=shapes); mid_channel=min(512, in_channels[-1])=4.
Student feats: f1 [2,2,8,8], f2 [2,3,4,4], f3 [2,4,2,2], f4 [2,4,1,1]; teacher feats (t_features[1:])
[2,3,8,8], [2,4,4,4], [2,5,2,2], [2,5,1,1]. Module in TRAIN mode (BN batch statistics) as in train.py.
hcl levels: h=8 uses pools 4,2,1 (weights 1,.5,.25,.125 / 1.875); h=4 uses 2,1 (1,.5,.25 / 1.75);
h=2 uses 1 (1,.5 / 1.5); h=1 plain MSE.
"""
import os
import sys
import torch
import torch.nn as nn
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.environ.get("KDBENCH_REFS_SRC", "/work/refs/src") + "/ReviewKD/CIFAR-100")
from _common import tl, state, provenance, write, split_cases
import model.reviewkd as RK

g = torch.Generator().manual_seed(1)
f0 = torch.randn(2, 1, 1, 1, generator=g)
fs = [torch.randn(s, generator=g).relu().requires_grad_(True)
      for s in [(2, 2, 8, 8), (2, 3, 4, 4), (2, 4, 2, 2), (2, 4, 1, 1)]]
ft = [torch.randn(s, generator=g) for s in [(2, 3, 8, 8), (2, 4, 4, 4), (2, 5, 2, 2)]]  # pre-ReLU teacher f1..f3
ft.append(torch.randn(2, 5, 1, 1, generator=g).relu())                                 # teacher f4: avgpool of post-ReLU
logit = torch.randn(2, 7, generator=g)


class StubStudent(nn.Module):
    def forward(self, x, is_feat=False, preact=False):
        return [f0] + fs, logit


_to = nn.Module.to
def _to_cpu_for_cuda(self, *a, **k):
    if a and a[0] == "cuda":
        return self
    return _to(self, *a, **k)
nn.Module.to = _to_cpu_for_cuda
try:
    torch.manual_seed(0)
    net = RK.ReviewKD(StubStudent(), in_channels=[2, 3, 4, 4], out_channels=[3, 4, 5, 5],
                      shapes=[1, 2, 4, 8], out_shapes=None)
finally:
    nn.Module.to = _to
with torch.no_grad():
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5); m.bias.normal_(0, 0.5)
net.train()
w0 = state(net)

res_cap = []
hooks = [a.register_forward_hook(lambda m, i, o: res_cap.append(o[1])) for a in net.abfs]
results, lg = net(torch.zeros(1))
for h in hooks: h.remove()
for r in results:
    r.retain_grad()
loss = RK.hcl(results, ft)
loss.backward()

# standalone hcl on the peer's function with plain tensors (teacher vs teacher*0.5+noise), incl. grads
a = [torch.randn(s, generator=g).requires_grad_(True) for s in [(1, 1, 8, 8), (1, 2, 4, 4), (1, 2, 2, 2), (1, 2, 1, 1)]]
b = [torch.randn(x.shape, generator=g) for x in a]
l_direct = RK.hcl(a, b); l_direct.backward()
per_level = [RK.hcl([x], [y]).item() for x, y in zip(a, b)]

cases = {
    "reviewkd_forward_hcl": {
        "inputs": {"student_feats_f1_to_f4": [tl(x) for x in fs], "student_f0_ignored": tl(f0),
                   "teacher_feats": [tl(x) for x in ft]},
        "outputs": {"results": [tl(r) for r in results],
                    "abf_residual_out_f4_level(mid 4ch,1x1)": tl(res_cap[0]),
                    "hcl": tl(loss),
                    "bn_running_after_forward": {k: v for k, v in state(net).items() if "running" in k}},
        "grad": {"student_feats_f1_to_f4": [tl(x.grad) for x in fs]},
    },
    "hcl_direct": {
        "inputs": {"fstudent": [tl(x) for x in a], "fteacher": [tl(x) for x in b]},
        "outputs": {"hcl": tl(l_direct), "per_level": per_level},
        "grad": {"fstudent": [tl(x.grad) for x in a]},
    },
}
obj = {
    "provenance": provenance("dvlab-research/ReviewKD", "CIFAR-100/model/reviewkd.py", "ReviewKD (ABF x4) + hcl",
                             {"in_channels": [2, 3, 4, 4], "out_channels": [3, 4, 5, 5], "shapes": [1, 2, 4, 8],
                              "out_shapes": None, "mid_channel": 4, "mode": "train"},
                             {"seed": "torch.manual_seed(0) then ReviewKD(...) (ABF init: kaiming_uniform_(a=1) on conv1/conv2, default att_conv); BN weight U(0.5,1.5), bias N(0,0.5); inputs Generator seed 1",
                              "cuda_workaround": "nn.Module.to('cuda') -> identity during ReviewKD construction",
                              "state_dict_keys": "abfs.{0..3} are in REVERSED order: abfs.0 = ABF for f4 (in 4, out 5, no att_conv), abfs.3 = ABF for f1 (in 2, out 3)"}),
    "weights": {"state_dict": w0},
}
obj.update(split_cases(cases))
write("reviewkd", obj)
