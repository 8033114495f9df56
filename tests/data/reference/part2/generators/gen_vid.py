"""Reference values for VID (RepDistiller distiller_zoo/VID.py, class VIDLoss).

Peer code is imported from the checkout, never re-typed. Three cases:
  same  : student [4,4,4,4], teacher [4,8,4,4]   (no pooling)
  pool_s: student [2,4,4,4], teacher [2,8,2,2]   (s_H > t_H: the STUDENT map is adaptive-avg-pooled)
  pool_t: student [2,4,2,2], teacher [2,8,4,4]   (s_H < t_H: the TEACHER map is adaptive-avg-pooled)
VIDLoss(num_input_channels=4, num_mid_channel=8, num_target_channels=8)  -- RepDistiller builds
VIDLoss(s_C, t_C, t_C), i.e. mid = teacher channels.
log_scale: the init value (init_pred_var=5, eps=1e-5) is recorded, then replaced by a fixed
per-channel perturbation so the per-channel variance broadcast is exercised.
"""
import os
import sys
import torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import tl, state, provenance, write, load_by_path, split_cases, SRC

VID = load_by_path("rd_vid", f"{SRC}/RepDistiller/distiller_zoo/VID.py")

torch.manual_seed(0)
crit = VID.VIDLoss(4, 8, 8)  # init_pred_var=5.0, eps=1e-5 (defaults)
log_scale_init = crit.log_scale.detach().clone()
with torch.no_grad():
    crit.log_scale.add_(0.5 * torch.randn(8))

cases = {}
g = torch.Generator().manual_seed(1)
for name, ss, ts in [("same", (4, 4, 4, 4), (4, 8, 4, 4)),
                     ("pool_s", (2, 4, 4, 4), (2, 8, 2, 2)),
                     ("pool_t", (2, 4, 2, 2), (2, 8, 4, 4))]:
    fs = torch.randn(ss, generator=g).relu().requires_grad_(True)   # post-ReLU like feat[1:-1]
    ft = torch.randn(ts, generator=g).relu()
    crit.zero_grad()
    loss = crit(fs, ft)
    loss.backward()
    cases[name] = {
        "inputs": {"student": tl(fs), "teacher": tl(ft)},
        "outputs": {"loss": tl(loss)},
        "grad": {"student": tl(fs.grad), "log_scale": tl(crit.log_scale.grad),
                 "regressor.0.weight": tl(crit.regressor[0].weight.grad)} if name == "same" else
                {"student": tl(fs.grad), "log_scale": tl(crit.log_scale.grad)},
    }

pred_var = (torch.log(1.0 + torch.exp(crit.log_scale)) + crit.eps).detach()
obj = {
    "provenance": provenance("HobbitLong/RepDistiller", "distiller_zoo/VID.py", "VIDLoss",
                             {"num_input_channels": 4, "num_mid_channel": 8, "num_target_channels": 8,
                              "init_pred_var": 5.0, "eps": 1e-5},
                             {"seed": "torch.manual_seed(0) before VIDLoss(); log_scale += 0.5*randn(8); inputs from Generator seed 1 (randn().relu())"}),
    "weights": {"state_dict": state(crit), "log_scale_init": tl(log_scale_init),
                "note": "regressor = Conv1x1(4->8,no bias) ReLU Conv1x1(8->8) ReLU Conv1x1(8->8); state_dict keys regressor.0/2/4.weight"},
    "derived": {"pred_var": tl(pred_var)},
}
obj.update(split_cases(cases))
write("vid", obj)
