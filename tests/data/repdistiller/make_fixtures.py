"""Made once, at development time, the files beside it from RepDistiller's own model code
(https://github.com/HobbitLong/RepDistiller, commit b84f547c5db6a35318d4671d7d5c4de74c822403,
models/__init__.py model_dict). Run: python make_fixtures.py /path/to/RepDistiller

- resnet8_cifar100.pth: a checkpoint as RepDistiller's train_teacher.py saves one
  ({'epoch', 'model': state_dict, 'best_acc', 'optimizer'}), for models/resnet.py resnet8(num_classes=100)
  with seeded random weights and batch-norm statistics (zip format, torch 2.11).
- resnet8_cifar100_logits.json: that model's logits (eval mode) on the input x.flatten()[i] = sin(0.37 * i)
  of shape [4, 3, 32, 32], float32.
- state_dict_names.json: for every RepDistiller model kdbench's zoo has, the number of state-dict entries
  and the SHA-256 of its sorted lines "name:d0,d1,...\\n" (names and shapes, 100 classes).
"""
import hashlib
import json
import sys

import torch

sys.path.insert(0, sys.argv[1])
from models import model_dict  # noqa: E402  (RepDistiller's)

ZOO_NAMES = {"resnet8": "resnet8", "resnet14": "resnet14", "resnet20": "resnet20", "resnet32": "resnet32",
             "resnet44": "resnet44", "resnet56": "resnet56", "resnet110": "resnet110", "resnet8x4": "resnet8x4",
             "resnet32x4": "resnet32x4", "wrn_16_1": "wrn_16_1", "wrn_16_2": "wrn_16_2", "wrn_40_1": "wrn_40_1",
             "wrn_40_2": "wrn_40_2", "vgg8": "vgg8", "vgg11": "vgg11", "vgg13": "vgg13",
             "MobileNetV2": "mobilenetv2", "ShuffleV1": "shufflenetv1", "ShuffleV2": "shufflenetv2"}


def listing(sd):
    lines = sorted("%s:%s\n" % (k, ",".join(str(d) for d in v.shape)) for k, v in sd.items())
    return len(lines), hashlib.sha256("".join(lines).encode()).hexdigest()


names = {}
for rd_name, zoo_name in ZOO_NAMES.items():
    n, digest = listing(model_dict[rd_name](num_classes=100).state_dict())
    names[zoo_name] = {"repdistiller": rd_name, "entries": n, "sha256": digest}
json.dump(names, open("state_dict_names.json", "w"), indent=1, sort_keys=True)

torch.manual_seed(0)
model = model_dict["resnet8"](num_classes=100)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.2, 0.2)
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(1234)
        if isinstance(m, torch.nn.Linear):
            m.bias.uniform_(-0.1, 0.1)
# Plain SGD keeps the file small: its optimizer state has no momentum buffers (the tests make
# checkpoints with them at run time).
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, weight_decay=5e-4)
model.train()
loss = model(torch.randn(2, 3, 32, 32)).logsumexp(1).mean()
loss.backward()
optimizer.step()
optimizer.zero_grad()
model.eval()
state = {"epoch": 240, "model": model.state_dict(), "best_acc": torch.tensor(71.5), "optimizer": optimizer.state_dict()}
torch.save(state, "resnet8_cifar100.pth")
x = torch.sin(0.37 * torch.arange(4 * 3 * 32 * 32, dtype=torch.float32)).view(4, 3, 32, 32)
with torch.no_grad():
    logits = model(x)
json.dump({"model": "resnet8", "num_classes": 100, "input": "x.flatten()[i] = sin(0.37 * i), shape [4, 3, 32, 32]",
           "logits": [[float(v) for v in row] for row in logits]}, open("resnet8_cifar100_logits.json", "w"))
print("entries:", {k: v["entries"] for k, v in names.items()})
