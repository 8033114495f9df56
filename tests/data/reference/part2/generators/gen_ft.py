"""Reference values for FT (RepDistiller distiller_zoo/FT.py FactorTransfer; models/util.py Paraphraser, Translator).

Init stage (helper/pretrain.py, distill='factor'):  _, rec = Paraphraser(f_t); loss = nn.MSELoss()(rec, f_t)
Main stage (helper/loops.py):  factor_s = Translator(feat_s[-2]) [train mode, BN batch stats];
                               factor_t = Paraphraser(feat_t[-2], is_factor=True)  [eval mode, no BN];
                               loss_kd = FactorTransfer()(factor_s, factor_t)   (p1=2, p2=1)
Shapes: teacher feat [2,4,4,4] (k=0.5 -> factor channels int(4*0.5)=2), student feat [2,3,2,2].
  => factor_s [2,2,2,2], factor_t [2,2,4,4]: factor_loss pools the TEACHER factor (larger) to 2x2.
Extra case "factor_loss_direct": FactorTransfer on raw tensors with the student side larger (student pooled).
"""
import os
import sys
import torch
import torch.nn as nn
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import tl, state, provenance, write, load_by_path, split_cases, SRC

FT = load_by_path("rd_ft", f"{SRC}/RepDistiller/distiller_zoo/FT.py")
UT = load_by_path("rd_models_util", f"{SRC}/RepDistiller/models/util.py")

t_shape = torch.Size([2, 4, 4, 4]); s_shape = torch.Size([2, 3, 2, 2])
torch.manual_seed(0)
para = UT.Paraphraser(t_shape)            # k=0.5, use_bn=False, LeakyReLU(0.1)
trans = UT.Translator(s_shape, t_shape)   # k=0.5, use_bn=True, LeakyReLU(0.1)
with torch.no_grad():
    for m in trans.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5); m.bias.normal_(0, 0.5)
w_para, w_trans = state(para), state(trans)

g = torch.Generator().manual_seed(1)
f_t = torch.randn(t_shape, generator=g).relu()
f_s = torch.randn(s_shape, generator=g).relu().requires_grad_(True)

# init stage: reconstruction
para.train()
factor0, rec = para(f_t)
rec_loss = nn.MSELoss()(rec, f_t)
rec_loss.backward()
g_para = {"encoder.0.bias": tl(para.encoder[0].bias.grad), "decoder.6.bias": tl(para.decoder[6].bias.grad)}

# main stage
para.eval(); trans.train()
crit = FT.FactorTransfer()
factor_s = trans(f_s)
factor_t = para(f_t, is_factor=True)
factor_s.retain_grad()
loss = crit(factor_s, factor_t)
loss.backward()

cases = {
    "paraphraser_init": {"inputs": {"f_t": tl(f_t)},
                         "outputs": {"factor": tl(factor0), "rec": tl(rec), "mse": tl(rec_loss)},
                         "grad": g_para},
    "main": {"inputs": {"f_s": tl(f_s), "f_t": tl(f_t)},
             "outputs": {"factor_s": tl(factor_s), "factor_t": tl(factor_t),
                         "factor_vec_s": tl(crit.factor(factor_s)),
                         "factor_vec_t_pooled": tl(crit.factor(torch.nn.functional.adaptive_avg_pool2d(factor_t, (2, 2)))),
                         "loss": tl(loss)},
             "grad": {"f_s": tl(f_s.grad), "factor_s": tl(factor_s.grad)}},
}
a = torch.randn(2, 3, 4, 4, generator=g).requires_grad_(True)
b = torch.randn(2, 3, 2, 2, generator=g)
l1 = crit(a, b); l1.backward()
c2 = FT.FactorTransfer(p1=2, p2=2)
a2 = a.detach().clone().requires_grad_(True)
l2 = c2(a2, b); l2.backward()
cases["factor_loss_direct"] = {"inputs": {"f_s": tl(a), "f_t": tl(b)},
                               "outputs": {"loss_p2_1": tl(l1), "loss_p2_2": tl(l2)},
                               "grad": {"f_s_p2_1": tl(a.grad), "f_s_p2_2": tl(a2.grad)}}

obj = {
    "provenance": provenance("HobbitLong/RepDistiller", "distiller_zoo/FT.py; models/util.py",
                             "FactorTransfer(p1=2,p2=1); Paraphraser(t_shape,k=0.5,use_bn=False); Translator(s_shape,t_shape,k=0.5,use_bn=True)",
                             {"t_shape": list(t_shape), "s_shape": list(s_shape)},
                             {"seed": "torch.manual_seed(0) then Paraphraser() then Translator(); Translator BN weight U(0.5,1.5), bias N(0,0.5); inputs Generator seed 1",
                              "modes": "paraphraser_init: paraphraser.train(); main: paraphraser.eval(), translator.train()",
                              "note": "inputs are recorded before any in-place op; paraphraser weights are those BEFORE the init-stage backward (no optimizer step taken)"}),
    "weights": {"paraphraser": w_para, "translator": w_trans},
}
obj.update(split_cases(cases))
write("ft", obj)
