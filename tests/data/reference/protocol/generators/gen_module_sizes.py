"""Sizes of the modules RepDistiller's train_student.py builds for each method, on every teacher -> student pair
of its CIFAR-100 tables: module_sizes.json, read by tests/test_harness_footprint.cpp.

Nothing is re-implemented: the models are RepDistiller's models.model_dict, the modules its own classes
(models/util.py ConvReg, Connector, LinearEmbed, Paraphraser, Translator; distiller_zoo/VID.py VIDLoss;
crd/criterion.py CRDLoss), imported from an unmodified checkout (a `git archive` of the commit) and built with
exactly the arguments train_student.py passes (its lines are quoted beside each below). As train_student.py does,
the shapes come from one forward of torch.randn(2, 3, 32, 32) through the eval-mode models with is_feat=True.
CPU workaround: CRDLoss's ContrastMemory calls AliasMethod.cuda() -> Tensor.cuda() in its constructor; while
CRDLoss is built (only then), torch.Tensor.cuda is the identity. No math is involved: only sizes are recorded.

  KDBENCH_REFS_SRC=/path/to/checkouts KDBENCH_REFS_GIT=/path/to/git-dirs \
    ~/.cache/kdbench/venv/bin/python gen_module_sizes.py
"""
import argparse
import contextlib
import io
import json
import os
import subprocess
import sys

import torch

SRC = os.environ.get("KDBENCH_REFS_SRC", "/work/refs/src")
GIT = os.environ.get("KDBENCH_REFS_GIT", "/work/.mirror")
OUT = os.environ.get("KDBENCH_REFS_OUT", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPO = "HobbitLong/RepDistiller"
CHECKOUT = os.path.join(SRC, "RepDistiller")

sys.path.insert(0, CHECKOUT)
from models import model_dict  # noqa: E402
from models.util import ConvReg, Connector, LinearEmbed, Paraphraser, Translator  # noqa: E402
from distiller_zoo.VID import VIDLoss  # noqa: E402
from crd.criterion import CRDLoss  # noqa: E402

# The pairs of RepDistiller's README tables "Benchmark Results on CIFAR-100" (teacher, student), as model_dict names.
PAIRS = [("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"), ("resnet110", "resnet20"),
         ("resnet110", "resnet32"), ("resnet32x4", "resnet8x4"), ("vgg13", "vgg8"), ("vgg13", "MobileNetV2"),
         ("ResNet50", "MobileNetV2"), ("ResNet50", "vgg8"), ("resnet32x4", "ShuffleV1"), ("resnet32x4", "ShuffleV2"),
         ("wrn_40_2", "ShuffleV1")]
N_DATA = 50000  # len(CIFAR100 train) in dataset/cifar100.py get_cifar100_dataloaders_sample (n_data)


def commit():
    return subprocess.check_output(["git", "--git-dir", os.path.join(GIT, "HobbitLong+RepDistiller/repo"),
                                    "rev-parse", "HEAD"], text=True).strip()


def sizes(*modules):
    params = sum(p.numel() for m in modules for p in m.parameters())
    buffers = sum(b.numel() for m in modules for b in m.buffers())
    return {"parameters": params, "buffer_elements": buffers}


def feats(name, cache={}):
    if name not in cache:
        with contextlib.redirect_stdout(io.StringIO()):  # MobileNetV2's constructor prints
            model = model_dict[name](num_classes=100)
        model.eval()
        torch.manual_seed(0)
        data = torch.randn(2, 3, 32, 32)  # train_student.py: data = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            feat, _ = model(data, is_feat=True)
            pre, _ = model(data, is_feat=True, preact=True)
        cache[name] = (feat, pre)
    return cache[name]


def modules_of(t, s):
    feat_t, _ = feats(t)
    feat_s, _ = feats(s)
    out = {}
    # hint: regress_s = ConvReg(feat_s[opt.hint_layer].shape, feat_t[opt.hint_layer].shape)   (hint_layer default 2)
    hint_layer = 2
    reg = ConvReg(feat_s[hint_layer].shape, feat_t[hint_layer].shape)
    out["hint"] = dict(sizes(reg), hint_layer=hint_layer, layer=type(reg.conv).__name__,
                       kernel=list(reg.conv.kernel_size), stride=list(reg.conv.stride),
                       student_shape=list(feat_s[hint_layer].shape[1:]), teacher_shape=list(feat_t[hint_layer].shape[1:]))
    # crd: opt.s_dim = feat_s[-1].shape[1]; opt.t_dim = feat_t[-1].shape[1]; criterion_kd = CRDLoss(opt)
    opt = argparse.Namespace(s_dim=feat_s[-1].shape[1], t_dim=feat_t[-1].shape[1], feat_dim=128, nce_k=16384,
                             nce_t=0.07, nce_m=0.5, n_data=N_DATA)
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        crd = CRDLoss(opt)
    finally:
        torch.Tensor.cuda = cuda
    # trainable: embed_s, embed_t; the memory bank (contrast) holds buffers only
    out["crd"] = dict(parameters=sizes(crd.embed_s, crd.embed_t)["parameters"],
                      buffer_elements=sizes(crd.contrast)["buffer_elements"], n_data=N_DATA, feat_dim=128)
    # correlation: embed_s = LinearEmbed(feat_s[-1].shape[1], opt.feat_dim); embed_t likewise
    out["correlation"] = sizes(LinearEmbed(feat_s[-1].shape[1], 128), LinearEmbed(feat_t[-1].shape[1], 128))
    # vid: s_n = [f.shape[1] for f in feat_s[1:-1]]; VIDLoss(s, t, t) for s, t in zip(s_n, t_n)
    out["vid"] = sizes(*[VIDLoss(a.shape[1], b.shape[1], b.shape[1]) for a, b in zip(feat_s[1:-1], feat_t[1:-1])])
    # abound: Connector([f.shape for f in feat_s[1:-1]], [f.shape for f in feat_t[1:-1]])
    out["abound"] = sizes(Connector([f.shape for f in feat_s[1:-1]], [f.shape for f in feat_t[1:-1]]))
    # factor: paraphraser = Paraphraser(feat_t[-2].shape); translator = Translator(feat_s[-2].shape, feat_t[-2].shape)
    out["factor"] = sizes(Paraphraser(feat_t[-2].shape), Translator(feat_s[-2].shape, feat_t[-2].shape))
    return out


def main():
    torch.manual_seed(0)
    models = sorted({m for p in PAIRS for m in p})
    doc = {
        "provenance": {
            "repo": REPO, "commit": commit(), "torch": torch.__version__,
            "files": ["train_student.py (main: the modules built per --distill)", "models/util.py", "models/__init__.py",
                      "distiller_zoo/VID.py", "crd/criterion.py", "crd/memory.py"],
            "pairs_from": "README.md, 'Benchmark Results on CIFAR-100', tables 1 and 2",
            "how": "peer classes imported from an unmodified checkout and built with train_student.py's arguments; "
                   "shapes from torch.randn(2, 3, 32, 32) through the eval-mode models (is_feat=True); "
                   "parameters = sum of numel over .parameters(), buffer_elements = over .buffers() (batch-norm "
                   "statistics, CRD's memory banks); CRD: torch.Tensor.cuda is the identity while CRDLoss is built",
            "generator": "tests/data/reference/protocol/generators/gen_module_sizes.py",
        },
        "features": {m: {"feat": [list(f.shape[1:]) for f in feats(m)[0]],
                         "preact": [list(f.shape[1:]) for f in feats(m)[1]]} for m in models},
        "pairs": [{"teacher": t, "student": s, "modules": modules_of(t, s)} for t, s in PAIRS],
    }
    path = os.path.join(OUT, "module_sizes.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
