#!/usr/bin/env python3
"""The everyday alternative, for scripts/bench-compare: a plain PyTorch-Python KD loop.

It trains each run of a logit-KD grid one after another and runs the teacher's forward pass in
every step of every run, as RepDistiller and mdistiller do. Models, data, batch size, optimizer,
schedule, epochs and threads are the same as kdbench's (cnn_tiny student, cnn_large teacher: the
same layers as models/zoo.cpp). The teacher's weights are random: only speed is measured.
It does the same bookkeeping and evaluation work as a kdbench run: the loss and train accuracy of
every step, top-1 on N_VAL held-out training images after every epoch and on the test split at the
end (eval mode, no grad, batches of 256, as kdbench's default eval_batch_size).

  naive_kd.py --runs T:ALPHA:SEED,... --epochs E --train N [--val N_VAL] --threads K [--no-teacher]
              [--no-eval] --out FILE
"""
import argparse
import gzip
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class SmallCnn(nn.Module):
    """kdbench's SmallCnn: stem conv3x3+BN+ReLU, stages conv3x3(stride 2,2,1)+BN(+ReLU), GAP, linear."""

    def __init__(self, widths, double_first, classes=10, in_ch=1):
        super().__init__()
        self.stem = nn.Conv2d(in_ch, widths[0], 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(widths[0])
        blocks = []
        for i in range(1, len(widths)):
            stride = 2 if i <= 2 else 1
            layers = [nn.Conv2d(widths[i - 1], widths[i], 3, stride=stride, padding=1, bias=False),
                      nn.BatchNorm2d(widths[i])]
            if double_first and i == 1:
                layers += [nn.ReLU(), nn.Conv2d(widths[i], widths[i], 3, padding=1, bias=False),
                           nn.BatchNorm2d(widths[i])]
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x):
        h = F.relu(self.stem_bn(self.stem(x)))
        for b in self.blocks:
            h = F.relu(b(h))
        return self.fc(h.mean((2, 3)))


def cnn_tiny():
    return SmallCnn([4, 6, 8, 8], False)


def cnn_large():
    return SmallCnn([16, 32, 64, 64], True)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    nd = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd).reshape(dims)


def load(root, split, first, count):
    x = read_idx(os.path.join(root, f"{split}-images-idx3-ubyte.gz"))[first:first + count]
    y = read_idx(os.path.join(root, f"{split}-labels-idx1-ubyte.gz"))[first:first + count]
    xt = (torch.from_numpy(x.copy()).float().unsqueeze(1) - 0.2860 * 255) / (0.3530 * 255)
    return xt, torch.from_numpy(y.astype(np.int64))


def top1(model, x, y, batch=256):
    model.eval()
    correct = 0
    dev = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i:i + batch].to(dev)).argmax(1).cpu() == y[i:i + batch]).sum().item()
    model.train()
    return 100.0 * correct / max(1, len(x))


def kd_loss(s, t, T):
    return F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean") * T * T


def train_run(x, y, teacher, T, alpha, seed, epochs, batch, lr, val=None, test=None, device="cpu"):
    """Returns (training-loop seconds, images trained, evaluation seconds, final test top-1). On a GPU the
    batches are copied from (pinned) host memory each step, as a DataLoader with pin_memory does."""
    torch.manual_seed(seed)
    student = cnn_tiny().to(device)
    opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = math.ceil(len(x) / batch)
    total = epochs * steps
    g = torch.Generator().manual_seed(seed)
    images = 0
    eval_seconds = 0.0
    start = time.perf_counter()
    for epoch in range(epochs):
        loss_sum, correct = 0.0, 0
        perm = torch.randperm(len(x), generator=g)
        for i in range(steps):
            idx = perm[i * batch:(i + 1) * batch]
            xb, yb = x[idx], y[idx]
            if device != "cpu":
                xb = xb.pin_memory().to(device, non_blocking=True)
                yb = yb.pin_memory().to(device, non_blocking=True)
            t = (epoch * steps + i) / total
            for group in opt.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * t))
            logits = student(xb)
            if teacher is not None:
                with torch.no_grad():
                    tl = teacher(xb)
                loss = (1 - alpha) * F.cross_entropy(logits, yb) + alpha * kd_loss(logits, tl, T)
            else:
                loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            correct += (logits.argmax(1) == yb).sum().item()
            images += len(idx)
        if val is not None:
            e0 = time.perf_counter()
            top1(student, *val)
            eval_seconds += time.perf_counter() - e0
    test_top1 = None
    if test is not None:
        e0 = time.perf_counter()
        test_top1 = top1(student, *test)
        eval_seconds += time.perf_counter() - e0
    if device != "cpu":
        torch.cuda.synchronize()
    return time.perf_counter() - start - eval_seconds, images, eval_seconds, test_top1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True, help="T:ALPHA:SEED,...")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train", type=int, default=60000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--root", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--val", type=int, default=0, help="held-out training images evaluated after each epoch")
    ap.add_argument("--no-teacher", action="store_true")
    ap.add_argument("--no-eval", action="store_true", help="no validation or test evaluation")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    x, y = load(a.root, "train", 0, a.train)
    val = test = None
    if not a.no_eval:
        val = load(a.root, "train", a.train, a.val) if a.val > 0 else None
        test = load(a.root, "t10k", 0, 10000)
    teacher = None
    if not a.no_teacher:
        torch.manual_seed(1234)
        teacher = cnn_large().eval().to(a.device)
    results = []
    wall = time.perf_counter()
    for spec in a.runs.split(","):
        T, alpha, seed = spec.split(":")
        seconds, images, eval_seconds, test_top1 = train_run(x, y, teacher, float(T), float(alpha), int(seed),
                                                             a.epochs, a.batch, a.lr, val, test, a.device)
        results.append({"temperature": float(T), "alpha": float(alpha), "seed": int(seed), "seconds": seconds,
                        "eval_seconds": eval_seconds, "test_top1": test_top1, "images": images,
                        "images_per_second": images / seconds})
    wall = time.perf_counter() - wall
    with open(a.out, "w") as f:
        json.dump({"torch": torch.__version__, "threads": a.threads, "wall_seconds": wall, "runs": results}, f, indent=1)


if __name__ == "__main__":
    main()
