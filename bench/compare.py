#!/usr/bin/env python3
"""Driver of scripts/bench-compare: the default sweep's logit-KD grid through kdbench and through a
naive PyTorch-Python loop (bench/naive_kd.py), on the same machine, in one invocation, each side
after a warm-up.

The grid, data subset, seeds and recipe are read from configs/fashion-mnist.json (the README's
default sweep): its logit_kd grid over all its seeds, its train subset, validation fraction, epochs,
batch size and learning rate. --quick keeps the grid and two seeds on a 6000-image subset, 1 epoch.

Both sides do the same work: train every run of the grid, evaluate each on the validation images
after every epoch and on the test split at the end. Sweep times are whole commands (process start,
data loading, teacher loading, training, evaluation, results), as a user waits for them.

Figures (bench-results.json):
  sweep_speedup_vs_naive   naive loop's command time / kdbench sweep's command time
  sweep_fraction_of_limit  limit / kdbench sweep time, limit = (number of runs) x (training time of one
                           student-only run) + one teacher pass over each seed's batches, both measured
                           here (training loops only: the limit has no start-up or evaluation at all)
  cpu_run_ratio_vs_pytorch kdbench images/s / PyTorch images/s of one KD run's training loop (teacher
                           forward on every batch on both sides), median of alternated repetitions
  cost_growth              kdbench sweep time for 1, 4, 12 (and 36) runs of the grid
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def run(cmd):
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"bench-compare: {' '.join(cmd)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return dt


class Setup:
    """The default sweep's settings that the comparison uses."""

    def __init__(self, source, quick):
        cfg = json.load(open(os.path.join(source, "configs", "fashion-mnist.json")))
        # The plain logit-KD grid: the logit_kd entry without a label (labelled ones are variants, e.g. logit
        # standardisation).
        kd = [m for m in cfg["methods"] if m["method"] == "logit_kd" and "label" not in m]
        if len(kd) != 1:
            sys.exit("bench-compare: configs/fashion-mnist.json must have exactly one logit_kd entry without a label")
        grid = kd[0].get("grid", {})
        self.temps = grid.get("temperature", [4])
        self.alphas = grid.get("alpha", [0.9])
        self.recipe = cfg["recipe"]
        self.seeds = cfg["seeds"]
        self.train = cfg["dataset"].get("train_subset", 60000)
        self.val_fraction = cfg["dataset"].get("val_fraction", 0.1)
        self.epochs = self.recipe["epochs"]
        if quick:
            self.seeds, self.train, self.epochs = self.seeds[:2], 6000, 1
        # kdbench's stratified split keeps round(train * val_fraction) images for validation.
        self.n_val = int(round(self.train * self.val_fraction))
        self.images_per_epoch = self.train - self.n_val

    def grid(self, seeds=None):
        return [(t, a, s) for s in (seeds or self.seeds) for t in self.temps for a in self.alphas]


def kdbench_config(work, name, runs, st, threads, method="logit_kd", teacher_cache=True, device="cpu"):
    seeds = sorted({s for _, _, s in runs})
    methods = []
    if method == "logit_kd":
        by = {}
        for t, a, s in runs:
            by.setdefault((t, a), []).append(s)
        for (t, a), ss in by.items():
            assert sorted(ss) == seeds, "grid points must cover the same seeds"
            methods.append({"method": "logit_kd", "params": {"temperature": t, "alpha": a}})
    else:
        methods.append({"method": "baseline"})
    r = st.recipe
    cfg = {
        "name": name, "output": os.path.join(work, name), "cache_dir": os.path.join(work, "cache"),
        "dataset": {"name": "fashion_mnist", "train_subset": st.train, "val_fraction": st.val_fraction},
        "seeds": seeds, "student": "cnn_tiny", "threads": threads, "report": False, "device": device,
        "teachers": {"cnn_large": {"model": "cnn_large", "obtain": "train"}},
        "recipe": {"epochs": st.epochs, "batch_size": r["batch_size"], "lr": r["lr"], "momentum": r["momentum"],
                   "nesterov": r["nesterov"], "weight_decay": r["weight_decay"], "schedule": r["schedule"]},
        "teacher_recipe": {"epochs": 1, "lr": 0.05},
        "methods": methods,
    }
    if not teacher_cache:
        cfg["teacher_cache_mb"] = 0  # a teacher forward on every batch, as in the PyTorch loop
    path = os.path.join(work, name + ".json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def student_epochs(kdbench, out):
    """Per-epoch figures of the (first) student run of a finished sweep: {epoch: {name: value}}."""
    p = subprocess.run([kdbench, "runs", out, "--format", "jsonl"], capture_output=True, text=True, check=True)
    for line in p.stdout.splitlines():
        if not line.startswith("{"):
            continue
        rec = json.loads(line)
        if rec["role"] == "student":
            ep = {}
            for e in rec["epochs"]:
                ep.setdefault(e["epoch"], {}).update({k: v for k, v in e.items() if k not in ("epoch", "stage")})
            return ep
    sys.exit(f"bench-compare: no student run in {out}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kdbench", required=True)
    ap.add_argument("--naive", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default="bench-results.json")
    ap.add_argument("--device", default="cpu", help="cpu | cuda: where both sides train")
    ap.add_argument("--grid-only", action="store_true",
                    help="only the grid, kdbench against the naive loop (no limit, one-run or growth figures)")
    ap.add_argument("--seeds", type=int, default=0, help="use only the first N seeds of the grid (0 = all)")
    a = ap.parse_args()
    st = Setup(a.source, a.quick)
    if a.seeds > 0:
        st.seeds = st.seeds[:a.seeds]
    full = st.grid()
    work = tempfile.mkdtemp(prefix="kdbench-bench-")
    py = sys.executable
    th = str(a.threads)
    # The Fashion-MNIST files where kdbench reads them too (KDBENCH_DATA_DIR, else Debian's package).
    root = os.path.join(os.environ["KDBENCH_DATA_DIR"], "fashion-mnist") if os.environ.get("KDBENCH_DATA_DIR") \
        else "/usr/share/datasets/fashion-mnist"

    def naive(name, runs, *extra):
        out = os.path.join(work, name + ".json")
        spec = ",".join(f"{t}:{al}:{s}" for t, al, s in runs)
        dt = run([py, a.naive, "--runs", spec, "--epochs", str(st.epochs), "--train", str(st.images_per_epoch),
                  "--val", str(st.n_val), "--lr", str(st.recipe["lr"]), "--batch", str(st.recipe["batch_size"]),
                  "--threads", th, "--device", a.device, "--root", root, "--out", out, *extra])
        return dt, json.load(open(out))

    try:
        print(f"bench-compare: {len(full)} logit-KD runs ({len(st.temps)} temperatures x {len(st.alphas)} alphas x "
              f"{len(st.seeds)} seeds), {st.epochs} epoch(s) of {st.images_per_epoch} images, {a.threads} threads",
              flush=True)
        # Warm-up of both sides (and the teacher, trained once into the bench's own cache).
        run([a.kdbench, "sweep", kdbench_config(work, "warmup", st.grid(st.seeds[:1])[:2], st, a.threads,
                                                device=a.device)])
        run([py, a.naive, "--runs", "4:0.9:0", "--epochs", "1", "--train", "2000", "--threads", th, "--no-eval",
             "--device", a.device, "--root", root, "--out", os.path.join(work, "warm.json")])

        # 1. The grid through kdbench, 2. the same grid through the naive loop (whole commands).
        t_kd = run([a.kdbench, "sweep", kdbench_config(work, "grid", full, st, a.threads, device=a.device)])
        t_naive, naive_grid = naive("naive_grid", full)
        print(f"  grid: kdbench {t_kd:.1f} s, naive PyTorch loop {t_naive:.1f} s", flush=True)
        if a.grid_only:
            res = {"mode": "grid-only", "device": a.device, "grid_runs": len(full), "epochs": st.epochs,
                   "train_images_per_epoch": st.images_per_epoch, "kdbench_sweep_seconds": t_kd,
                   "naive_loop_seconds": t_naive, "sweep_speedup_vs_naive": t_naive / t_kd}
            with open(a.out, "w") as f:
                json.dump(res, f, indent=1)
            print(f"sweep_speedup_vs_naive   {res['sweep_speedup_vs_naive']:.2f}")
            return

        # Limit, part 1: one student-only run's training loop (kdbench, baseline, same recipe).
        run([a.kdbench, "sweep", kdbench_config(work, "student_only", [full[0]], st, a.threads, method="baseline")])
        student_seconds = sum(e["group_seconds"] for e in student_epochs(a.kdbench,
                                                                         os.path.join(work, "student_only")).values())

        # 3. One KD run each way, alternated; kdbench with its teacher-output cache off, so that the teacher
        # runs on every batch as in the PyTorch loop. Its teacher time is also the limit's teacher pass.
        reps = 1 if a.quick else 3
        kd_ips, py_ips, teacher_pass = [], [], []
        images = st.images_per_epoch * st.epochs
        for i in range(reps):
            name = f"one{i}"
            run([a.kdbench, "sweep", kdbench_config(work, name, [(4, 0.9, 0)], st, a.threads, teacher_cache=False)])
            ep = student_epochs(a.kdbench, os.path.join(work, name))
            kd_ips.append(images / sum(e["group_seconds"] for e in ep.values()))
            teacher_pass.append(sum(e["teacher_seconds"] for e in ep.values()))
            _, one = naive(f"one_py{i}", [(4, 0.9, 0)], "--no-eval")
            py_ips.append(one["runs"][0]["images_per_second"])
        teacher_pass_seconds = statistics.median(teacher_pass)
        limit = len(full) * student_seconds + len(st.seeds) * teacher_pass_seconds

        # Cost growth: sweeps of 1, 4, 12 and 36 runs of one grid (temperatures x alphas 0.5, 0.7, 0.9 x seeds).
        growth = {}
        pairs12 = [(t, al) for t in [1, 2, 4, 8] for al in [0.5, 0.7, 0.9]]
        plans = {1: (pairs12[:1], [0]), 4: (pairs12[:4], [0]), 12: (pairs12, [0]), 36: (pairs12, [0, 1, 2])}
        for n in ([1, 4, 12] if a.quick else [1, 4, 12, 36]):
            pairs, ss = plans[n]
            pts = [(t, al, s) for s in ss for t, al in pairs]
            dt = run([a.kdbench, "sweep", kdbench_config(work, f"growth{n}", pts, st, a.threads)])
            growth[str(n)] = {"seconds": dt, "seconds_per_run": dt / n}

        git = subprocess.run(["git", "-C", a.source, "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", a.source, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        import torch
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
        except (OSError, StopIteration):
            pass
        res = {
            "mode": "quick" if a.quick else "full",
            "grid_runs": len(full), "temperatures": st.temps, "alphas": st.alphas, "seeds": st.seeds,
            "epochs": st.epochs, "train_images_per_epoch": st.images_per_epoch, "val_images": st.n_val,
            "kdbench_sweep_seconds": t_kd, "naive_loop_seconds": t_naive,
            "naive_loop_in_process_seconds": naive_grid["wall_seconds"],
            "sweep_speedup_vs_naive": t_naive / t_kd,
            "limit_seconds": limit, "student_only_run_seconds": student_seconds,
            "teacher_pass_seconds_per_seed": teacher_pass_seconds,
            "sweep_fraction_of_limit": limit / t_kd,
            "kdbench_one_run_images_per_second": statistics.median(kd_ips),
            "pytorch_one_run_images_per_second": statistics.median(py_ips),
            "one_run_repetitions": {"kdbench": kd_ips, "pytorch": py_ips},
            "cpu_run_ratio_vs_pytorch": statistics.median(kd_ips) / statistics.median(py_ips),
            "cost_growth": growth,
            "machine": {"cpu": cpu, "cores": os.cpu_count(), "node": platform.node()},
            "threads": a.threads, "libtorch": torch.__version__, "git_commit": git + ("-dirty" if dirty else ""),
        }
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
        n_img = len(full) * st.epochs * st.images_per_epoch
        print(f"{'':40}{'seconds':>10}{'images/s':>12}")
        print(f"{'kdbench sweep (' + str(len(full)) + ' runs)':40}{t_kd:10.1f}{n_img / t_kd:12.0f}")
        print(f"{'naive PyTorch loop (same grid)':40}{t_naive:10.1f}{n_img / t_naive:12.0f}")
        print(f"{'limit (student-only runs + teacher/seed)':40}{limit:10.1f}{n_img / limit:12.0f}")
        print(f"{'one KD run: kdbench':40}{'':10}{res['kdbench_one_run_images_per_second']:12.0f}")
        print(f"{'one KD run: PyTorch-Python':40}{'':10}{res['pytorch_one_run_images_per_second']:12.0f}")
        for n, g in growth.items():
            print(f"{'kdbench sweep of ' + n + ' run(s)':40}{g['seconds']:10.1f}   {g['seconds_per_run']:.2f} s/run")
        print(f"sweep_speedup_vs_naive   {res['sweep_speedup_vs_naive']:.2f}")
        print(f"sweep_fraction_of_limit  {res['sweep_fraction_of_limit']:.2f}")
        print(f"cpu_run_ratio_vs_pytorch {res['cpu_run_ratio_vs_pytorch']:.2f}")
        print(f"machine: {cpu}, {a.threads} threads, torch {torch.__version__}, commit {res['git_commit']}")
        print(f"wrote {a.out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
