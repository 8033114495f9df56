#!/usr/bin/env python3
"""Driver of scripts/bench-compare: the default sweep's logit-KD grid through kdbench and through a
naive PyTorch-Python loop, on the same machine, in one invocation, each after a warm-up.

Figures (bench-results.json):
  sweep_speedup_vs_naive   naive loop time / kdbench sweep time (same grid, same threads)
  sweep_fraction_of_limit  limit / kdbench sweep time, limit = sum over runs of one student-only
                           run's training time + one teacher pass over each seed's batches
  cpu_run_ratio_vs_pytorch kdbench images/s / PyTorch images/s for one KD run
  cost_growth              kdbench sweep time for 1, 4, 12 (and 36) runs of the grid
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time


def run(cmd, **kw):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"bench-compare: {' '.join(cmd)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return dt, p.stdout + p.stderr


def grid(n_runs, seeds):
    """The default sweep's logit-KD grid (T in 1,2,4,8 x alpha in 0.5,0.9) over seeds, first n_runs."""
    temps, alphas = [1, 2, 4, 8], [0.5, 0.9]
    pts = [(t, a, s) for s in seeds for t in temps for a in alphas]
    return pts[:n_runs]


def kdbench_config(work, name, runs, train, epochs, threads, method="logit_kd", teacher_cache=True):
    seeds = sorted({s for _, _, s in runs})
    methods = []
    if method == "logit_kd":
        # one entry per (T, alpha) that appears, over the seeds it appears with
        by = {}
        for t, a, s in runs:
            by.setdefault((t, a), []).append(s)
        seeds_needed = sorted({s for _, _, s in runs})
        for (t, a), ss in by.items():
            assert sorted(ss) == seeds_needed, "grid points must cover the same seeds"
            methods.append({"method": "logit_kd", "params": {"temperature": t, "alpha": a}})
    else:
        methods.append({"method": "baseline"})
    cfg = {
        "name": name, "output": os.path.join(work, name), "cache_dir": os.path.join(work, "cache"),
        "dataset": {"name": "fashion_mnist", "train_subset": train, "val_fraction": 0.1},
        "seeds": seeds, "student": "cnn_tiny", "threads": threads, "report": False,
        "teachers": {"cnn_large": {"model": "cnn_large", "obtain": "train"}},
        "recipe": {"epochs": epochs, "batch_size": 128, "lr": 0.03, "momentum": 0.9, "nesterov": True},
        "teacher_recipe": {"epochs": 1, "lr": 0.05},
        "methods": methods,
    }
    if not teacher_cache:
        cfg["teacher_cache_mb"] = 0  # a teacher forward on every batch, as a single run without kdbench would do
    path = os.path.join(work, name + ".json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def store_runs(kdbench, out):
    _, text = run([kdbench, "runs", out, "--format", "jsonl"])
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kdbench", required=True)
    ap.add_argument("--naive", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default="bench-results.json")
    a = ap.parse_args()
    train, epochs = (6000, 1) if a.quick else (20000, 2)
    n_val = int(round(train * 0.1))
    images_per_epoch = train - n_val
    seeds = [0, 1]
    full = grid(16, seeds)
    work = tempfile.mkdtemp(prefix="kdbench-bench-")
    py = sys.executable
    try:
        # Warm-up (and the teacher, trained once into the bench's own cache).
        run([a.kdbench, "sweep", kdbench_config(work, "warmup", grid(2, [0]), train, 1, a.threads)])
        run([py, a.naive, "--runs", "4:0.9:0", "--epochs", "1", "--train", str(min(train, 2000)),
             "--threads", str(a.threads), "--out", os.path.join(work, "warm.json")])

        # 1. kdbench sweep of the grid.
        t_kd, _ = run([a.kdbench, "sweep", kdbench_config(work, "grid", full, train, epochs, a.threads)])
        # 2. naive loop over the same grid.
        naive_out = os.path.join(work, "naive.json")
        spec = ",".join(f"{t}:{al}:{s}" for t, al, s in full)
        t_naive, _ = run([py, a.naive, "--runs", spec, "--epochs", str(epochs), "--train", str(images_per_epoch),
                          "--threads", str(a.threads), "--out", naive_out])
        naive = json.load(open(naive_out))
        # Limit: one student-only run (its training seconds) x runs + one teacher pass per seed.
        run([a.kdbench, "sweep", kdbench_config(work, "student_only", [(4, 0.9, 0)], train, epochs, a.threads,
                                                method="baseline")])
        base = [r for r in store_runs(a.kdbench, os.path.join(work, "student_only")) if r["role"] == "student"][0]
        student_seconds = max(e["seconds"] for e in base["epochs"] if "seconds" in e)
        # 3. one KD run each way; kdbench with its teacher-output cache off, so that the teacher runs on every
        # batch as in the PyTorch loop. Its teacher time is also one teacher pass over a seed's batches.
        t_one, _ = run([a.kdbench, "sweep", kdbench_config(work, "one", [(4, 0.9, 0)], train, epochs, a.threads,
                                                           teacher_cache=False)])
        one = [r for r in store_runs(a.kdbench, os.path.join(work, "one")) if r["role"] == "student"][0]
        last = {}
        for e in one["epochs"]:
            for k in ("seconds", "teacher_seconds"):
                if k in e:
                    last.setdefault(k, {})[e["epoch"]] = e[k]
        teacher_pass_seconds = sum(last["teacher_seconds"].values())
        teacher_pass = {s: teacher_pass_seconds for s in seeds}
        limit = len(full) * student_seconds + sum(teacher_pass.values())
        kd_train_seconds = max(last["seconds"].values()) + teacher_pass_seconds
        kd_ips = images_per_epoch * epochs / kd_train_seconds
        one_py = os.path.join(work, "one_py.json")
        run([py, a.naive, "--runs", "4:0.9:0", "--epochs", str(epochs), "--train", str(images_per_epoch),
             "--threads", str(a.threads), "--out", one_py])
        py_ips = json.load(open(one_py))["runs"][0]["images_per_second"]
        # Cost growth.
        growth = {}
        pairs12 = [(t, al) for t in [1, 2, 4, 8] for al in [0.5, 0.7, 0.9]]
        plans = {1: (pairs12[:1], [0]), 4: (pairs12[:4], [0]), 12: (pairs12, [0]), 36: (pairs12, [0, 1, 2])}
        for n in ([1, 4, 12] if a.quick else [1, 4, 12, 36]):
            pairs, ss = plans[n]
            pts = [(t, al, s) for s in ss for t, al in pairs]
            dt, _ = run([a.kdbench, "sweep", kdbench_config(work, f"growth{n}", pts, train, epochs, a.threads)])
            growth[str(n)] = {"seconds": dt, "seconds_per_run": dt / n}

        git = subprocess.run(["git", "-C", a.source, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        import torch
        res = {
            "mode": "quick" if a.quick else "full",
            "grid_runs": len(full), "epochs": epochs, "train_images_per_epoch": images_per_epoch,
            "kdbench_sweep_seconds": t_kd, "naive_loop_seconds": naive["wall_seconds"],
            "sweep_speedup_vs_naive": naive["wall_seconds"] / t_kd,
            "limit_seconds": limit, "student_only_run_seconds": student_seconds,
            "teacher_pass_seconds_per_seed": teacher_pass,
            "sweep_fraction_of_limit": limit / t_kd,
            "kdbench_one_run_images_per_second": kd_ips, "pytorch_one_run_images_per_second": py_ips,
            "cpu_run_ratio_vs_pytorch": kd_ips / py_ips,
            "cost_growth": growth,
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                        "node": platform.node()},
            "threads": a.threads, "libtorch": torch.__version__, "git_commit": git,
        }
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
        print(f"{'':34}{'seconds':>10}{'images/s':>12}")
        print(f"{'kdbench sweep (' + str(len(full)) + ' runs)':34}{t_kd:10.1f}"
              f"{len(full) * epochs * images_per_epoch / t_kd:12.0f}")
        print(f"{'naive PyTorch loop (same grid)':34}{naive['wall_seconds']:10.1f}"
              f"{len(full) * epochs * images_per_epoch / naive['wall_seconds']:12.0f}")
        print(f"{'limit (student-only + teacher/seed)':34}{limit:10.1f}")
        print(f"{'one KD run: kdbench':34}{'':10}{kd_ips:12.0f}")
        print(f"{'one KD run: PyTorch-Python':34}{'':10}{py_ips:12.0f}")
        for n, g in growth.items():
            print(f"{'sweep of ' + n + ' runs':34}{g['seconds']:10.1f}   {g['seconds_per_run']:.2f} s/run")
        print(f"sweep_speedup_vs_naive   {res['sweep_speedup_vs_naive']:.2f}")
        print(f"sweep_fraction_of_limit  {res['sweep_fraction_of_limit']:.2f}")
        print(f"cpu_run_ratio_vs_pytorch {res['cpu_run_ratio_vs_pytorch']:.2f}")
        print(f"wrote {a.out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
