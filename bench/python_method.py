"""What a Python method costs against the same method in C++: the default sweep's logit-KD grid trained twice, once
with the native `logit_kd` and once with the Python port `py_logit_kd` (python/ports/logit_kd.py, run inside kdbench
through the embedded interpreter), alternated, each a whole `kdbench sweep` in a fresh folder behind the same cached
teacher.

Figures (medians over the rounds):
- per_step_ms: the time of one training step of a run at the config's batch size (forward, method, backward and
  update, on its lane), from each run's recorded images per second over its own training seconds, averaged over the
  runs;
- ratio_python_vs_native: per_step_ms of the Python method over the native one's (the README's figure);
- cpu_cores_used: (user + system CPU seconds) / wall seconds of the whole sweep process, which trains the runs of a
  seed on two lanes: about 2 when both cores are kept busy, about 1 if the GIL serialised the lanes.

Usage: scripts/bench-python-method [--rounds 3] [--epochs 1] [--out FILE]   (about 5 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def grid_config(method: str, out: str, cache: str, epochs: int) -> dict:
    with open(os.path.join(ROOT, "configs", "fashion-mnist.json")) as f:
        base = json.load(f)
    entry = next(m for m in base["methods"] if m["method"] == "logit_kd" and "label" not in m)
    cfg = {k: base[k] for k in ("dataset", "student", "recipe", "teacher_recipe", "teacher_cache_mb")}
    cfg["recipe"] = dict(cfg["recipe"], epochs=epochs)
    cfg.update({"name": "bench-python-method", "output": out, "cache_dir": cache, "seeds": [0],
                "teachers": {"cnn_large": base["teachers"]["cnn_large"]},
                "plugins": [os.path.join(ROOT, "python", "ports", "logit_kd.py")],
                "methods": [{"method": method, "teachers": ["cnn_large"], "grid": entry["grid"]}]})
    return cfg


def run_sweep(kdbench: str, cfg: dict, folder: str) -> dict:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "sweep.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    start = time.monotonic()
    proc = subprocess.Popen([kdbench, "sweep", path, "--no-report"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate()
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"kdbench sweep failed ({proc.returncode}):\n{out.decode()[-3000:]}")
    con = sqlite3.connect(os.path.join(cfg["output"], "results.db"))
    rows = con.execute("SELECT wall_seconds, images_per_second FROM runs WHERE role = 'student'").fetchall()
    con.close()
    batch = cfg["recipe"]["batch_size"]
    # A run's images per second are its images over its own training seconds (its steps on its lane).
    per_step = [1000.0 * batch / ips for _, ips in rows if ips > 0]
    return {"wall": wall, "train_seconds": sum(r[0] for r in rows), "runs": len(rows),
            "per_step_ms": statistics.mean(per_step) if per_step else float("nan")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--kdbench", default=os.path.join(ROOT, "build", "kdbench"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench-python-method.json"))
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="kdbench-bench-py-")
    cache = os.path.join(work, "cache")
    results = {"native": [], "python": []}
    try:
        # Warm-up: trains the teacher into the cache (not timed) and starts both paths once.
        for method in ("logit_kd", "py_logit_kd"):
            run_sweep(args.kdbench, grid_config(method, os.path.join(work, f"warm-{method}"), cache, 1),
                      os.path.join(work, f"warm-{method}"))
        for r in range(args.rounds):
            for side, method in (("native", "logit_kd"), ("python", "py_logit_kd")):
                out = os.path.join(work, f"{side}-{r}")
                before = os.times()
                res = run_sweep(args.kdbench, grid_config(method, out, cache, args.epochs), out)
                after = os.times()
                cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
                res["cpu_cores_used"] = cpu / res["wall"]
                results[side].append(res)
                print(f"round {r + 1} {side:6s}: {res['runs']} runs, "
                      f"{res['per_step_ms']:.2f} ms/step, sweep {res['wall']:.1f} s, {res['cpu_cores_used']:.2f} cores")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {side: {k: statistics.median(x[k] for x in rs) for k in ("per_step_ms", "wall", "cpu_cores_used")}
           for side, rs in results.items()}
    ratio = med["python"]["per_step_ms"] / med["native"]["per_step_ms"]
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty", "--abbrev=12"],
                            capture_output=True, text=True).stdout.strip()
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
    summary = {"ratio_python_vs_native": ratio, "medians": med, "rounds": results, "epochs": args.epochs,
               "commit": commit, "cpu": cpu_model, "cores": os.cpu_count(), "machine": platform.machine()}
    with open(args.out, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"per step: native {med['native']['per_step_ms']:.2f} ms, Python {med['python']['per_step_ms']:.2f} ms: "
          f"ratio {ratio:.3f}; cores used: native {med['native']['cpu_cores_used']:.2f}, "
          f"Python {med['python']['cpu_cores_used']:.2f} (of {os.cpu_count()}); written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
