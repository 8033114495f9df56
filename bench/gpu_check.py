#!/usr/bin/env python3
"""The GPU claims, measured in one run (scripts/gpu-check calls this after building and testing).

  (1) run_ratio_vs_eager: one resnet32x4 -> resnet8x4 logit-KD run at batch 128 on 32x32 inputs (CIFAR-100
      shapes, synthetic data), kdbench's training throughput (images over the group's training seconds of its
      last epoch, after warm-up epochs) against the same training step in PyTorch eager from the same wheel
      (teacher forward without grad, student forward, CE + T^2 KL, backward, SGD with Nesterov momentum and
      weight decay, a pinned host batch copied to the GPU and the loss read every step, as a DataLoader-fed
      loop does), timed after warm-up steps. The eager models are written here (CIFAR ResNets as kdbench's zoo
      and RepDistiller define them); their parameter counts are checked against kdbench's.
  (2) fused8_ratio_vs_sequential: 8 resnet8x4 logit-KD students of one sweep (8 settings) trained fused in
      lockstep behind one teacher forward, against the same 8 trained one after another (lockstep 1, no fusion,
      a teacher forward per run): total training seconds, sequential / fused.
  (3) sweep_speedup_vs_naive: the default sweep's logit-KD grid, kdbench against bench/naive_kd.py on the same
      device (bench/compare.py --grid-only).

--dry-run: the same steps on the CPU at tiny sizes (so the script itself is tested in CI); its figures mean
nothing. Writes gpu-results.json and prints a table.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---- PyTorch eager side ---------------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.b1(self.c1(x)))
        h = self.b2(self.c2(h))
        return F.relu(h + (x if self.short is None else self.short(x)))


class CifarResNet(nn.Module):
    """3x3 stem, three stages of (depth - 2) / 6 basic blocks, the last two starting with stride 2."""

    def __init__(self, depth, stem, widths, classes):
        super().__init__()
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(stem)
        blocks, cin = [], stem
        for s, w in enumerate(widths):
            for b in range(n):
                blocks.append(Block(cin, w, 2 if (b == 0 and s > 0) else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        h = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


def eager_images_per_second(device, batch, steps, warmup, classes=100):
    torch.manual_seed(0)
    teacher = CifarResNet(32, 32, [64, 128, 256], classes).to(device).eval()
    student = CifarResNet(8, 32, [64, 128, 256], classes).to(device).train()
    counts = (sum(p.numel() for p in teacher.parameters()), sum(p.numel() for p in student.parameters()))
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    pin = device.startswith("cuda")
    xs = torch.randn(batch, 3, 32, 32)
    ys = torch.randint(0, classes, (batch,))
    if pin:
        xs, ys = xs.pin_memory(), ys.pin_memory()
    T, alpha = 4.0, 0.9

    def step():
        x = xs.to(device, non_blocking=True)
        y = ys.to(device, non_blocking=True)
        with torch.no_grad():
            t = teacher(x)
        s = student(x)
        kd = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean") * T * T
        loss = (1 - alpha) * F.cross_entropy(s, y) + alpha * kd
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(warmup):
        step()
    if pin:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if pin:
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0), counts


# ---- kdbench side ----------------------------------------------------------------------------------------
def run(cmd, log):
    t = time.perf_counter()
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        sys.exit(f"gpu-check: {' '.join(cmd)} failed (exit {p.returncode}); see {log}")
    return time.perf_counter() - t


def sweep_config(work, name, device, train, epochs, batch, methods, lockstep=0, fuse="auto"):
    cfg = {
        "name": name, "output": os.path.join(work, name), "cache_dir": os.path.join(work, "cache"),
        "device": device, "report": False, "seeds": [0], "student": "resnet8x4", "lockstep": lockstep,
        "fuse": fuse, "teacher_cache_mb": 0,  # a teacher forward on every batch, as the eager loop does
        "dataset": {"name": "synthetic", "num_classes": 100, "channels": 3, "image_size": 32,
                    "train_size": train, "test_size": 256, "seed": 1},
        "teachers": {"t": {"model": "resnet32x4", "obtain": "train"}},
        "teacher_recipe": {"epochs": 1, "batch_size": batch, "lr": 0.05},
        "recipe": {"epochs": epochs, "batch_size": batch, "eval_batch_size": 512, "lr": 0.05, "momentum": 0.9,
                   "nesterov": True, "weight_decay": 5e-4},
        "methods": methods,
    }
    path = os.path.join(work, name + ".json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def students(kdbench, out):
    p = subprocess.run([kdbench, "runs", out, "--format", "jsonl"], capture_output=True, text=True, check=True)
    recs = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    return [r for r in recs if r["role"] == "student"]


def epoch_values(rec, name):
    """{epoch: value} of one per-epoch figure of a run."""
    out = {}
    for e in rec["epochs"]:
        if name in e:
            out[e["epoch"]] = e[name]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kdbench", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--out", default="gpu-results.json")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--extra", default="{}", help="JSON merged into the results (build time, tests)")
    a = ap.parse_args()
    dry = a.dry_run
    device = "cpu" if dry else "cuda"
    if not dry and not torch.cuda.is_available():
        sys.exit("gpu-check: no CUDA device here (use --dry-run on a CPU)")
    work = tempfile.mkdtemp(prefix="kdbench-gpucheck-")
    log = os.path.join(work, "log.txt")
    res = {"dry_run": dry, "device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    res.update(json.loads(a.extra))
    batch = 16 if dry else 128
    # (1) one run against the eager step
    train = 4 * batch if dry else 20000
    epochs = 2 if dry else 3
    kd = [{"method": "logit_kd", "params": {"temperature": 4.0, "alpha": 0.9}}]
    run([a.kdbench, "sweep", sweep_config(work, "one", device, train, epochs, batch, kd)], log)
    rec = students(a.kdbench, os.path.join(work, "one"))[0]
    group = epoch_values(rec, "group_seconds")
    last = max(group)
    images = train - round(train * 0.1)  # the synthetic set keeps 10% of its training split for validation
    res["kdbench_images_per_second"] = images / group[last]
    eager, counts = eager_images_per_second(device, batch, steps=3 if dry else 300, warmup=1 if dry else 30)
    res["eager_images_per_second"] = eager
    res["eager_parameters"] = {"teacher": counts[0], "student": counts[1]}
    if counts != (7433860, 1233540):
        sys.exit(f"gpu-check: the eager models have {counts} parameters, kdbench's resnet32x4/resnet8x4 "
                 "7433860/1233540")
    res["run_ratio_vs_eager"] = res["kdbench_images_per_second"] / eager
    # (2) 8 students fused in lockstep against one after another
    temps = [1, 2, 3, 4, 5, 6, 8, 10]
    eight = [{"method": "logit_kd", "params": {"temperature": float(t), "alpha": 0.9}} for t in temps]
    train8 = 2 * batch if dry else 10000
    run([a.kdbench, "sweep", sweep_config(work, "fused8", device, train8, epochs, batch, eight, 0, "on")], log)
    run([a.kdbench, "sweep", sweep_config(work, "seq8", device, train8, epochs, batch, eight, 1, "off")], log)
    fused = students(a.kdbench, os.path.join(work, "fused8"))
    seq = students(a.kdbench, os.path.join(work, "seq8"))
    fused_s = sum(epoch_values(fused[0], "group_seconds").values())  # one group: every run has its seconds
    seq_s = sum(sum(epoch_values(r, "group_seconds").values()) for r in seq)
    res["fused8_seconds"], res["sequential8_seconds"] = fused_s, seq_s
    res["fused8_ratio_vs_sequential"] = seq_s / fused_s
    # (3) the default sweep's logit-KD grid against the naive loop
    cmp_out = os.path.join(work, "compare.json")
    cmd = [sys.executable, os.path.join(a.source, "bench", "compare.py"), "--kdbench", a.kdbench, "--naive",
           os.path.join(a.source, "bench", "naive_kd.py"), "--source", a.source, "--device", device,
           "--grid-only", "--out", cmp_out]
    if dry:
        cmd += ["--quick", "--seeds", "1"]
    run(cmd, log)
    cmp = json.load(open(cmp_out))
    res["sweep_speedup_vs_naive"] = cmp["sweep_speedup_vs_naive"]
    res["sweep_seconds"] = {"kdbench": cmp["kdbench_sweep_seconds"], "naive": cmp["naive_loop_seconds"],
                            "runs": cmp["grid_runs"]}
    git = subprocess.run(["git", "-C", a.source, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    res["commit"] = git or os.environ.get("KDBENCH_COMMIT", "unknown")
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    targets = {"run_ratio_vs_eager": 2.0, "fused8_ratio_vs_sequential": 4.0, "sweep_speedup_vs_naive": None}
    print(f"\n{'measure':32}{'value':>10}{'target':>10}")
    for k, tgt in targets.items():
        print(f"{k:32}{res[k]:10.2f}{('>= ' + str(tgt)) if tgt else '':>10}")
    print(f"kdbench {res['kdbench_images_per_second']:.0f} img/s, eager {eager:.0f} img/s; fused8 {fused_s:.1f} s, "
          f"sequential {seq_s:.1f} s")
    print(f"device {res['gpu'] or 'cpu'}, torch {res['torch']}, CUDA {res['cuda']}, commit {res['commit']}"
          + ("  (DRY RUN on the CPU: the figures mean nothing)" if dry else ""))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
