"""The twin check: two implementations of one method must train the same way, step by step.

A sweep trains both (e.g. the native ``logit_kd`` and the Python plugin ``py_logit_kd``) in lockstep on the same
seeds, batches and initial weights, with ``KDBENCH_TRACE_STEPS=FILE`` set so that kdbench appends every step's loss
terms of every run to FILE. This module pairs the runs of the two methods by seed (and student), and compares:

- every step's terms (by name, in order) and weighted total: the largest relative difference over all steps, and
  over the first step alone (the same weights and batch on both sides: the two losses compared as functions; later
  steps compare whole trajectories, where differences in rounding grow with training);
- the final weights (each run's checkpoint): the largest relative difference over all parameters and buffers.

A pair passes when both stay within their tolerances (default 1e-4 for terms, 1e-3 for weights) and the pair has at
least ``--min-steps`` steps. Used by tests/test_pybridge_twins.cpp and scripts/twin-check::

    python -m kdbench.twin --trace FILE --store DIR/results.db --pair logit_kd=py_logit_kd [--pair A=B ...]
           [--rel-terms 1e-4] [--rel-weights 1e-3] [--min-steps 50] [--json OUT]

Exit status 0 when every pair passes, 1 otherwise; one line per pair on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import sys
from collections import defaultdict
from typing import Dict, List, Tuple

import torch


def _rel(a: float, b: float) -> float:
    if a == b:
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def read_trace(path: str) -> Dict[str, List[dict]]:
    """run id -> its steps in order (epoch, step), each {"terms": {...}, "total": x}."""
    runs: Dict[str, List[dict]] = defaultdict(list)
    with open(path) as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                runs[rec["run"]].append(rec)
    for steps in runs.values():
        steps.sort(key=lambda r: (r["epoch"], r["step"]))
    return runs


def read_runs(store: str) -> List[dict]:
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM runs WHERE role = 'student'")]
    con.close()
    return rows


def load_weights(checkpoint: str) -> Dict[str, torch.Tensor]:
    """The tensors of a kdbench checkpoint (a LibTorch archive) by dotted name."""
    m = torch.jit.load(checkpoint, map_location="cpu")
    out = {k: v.detach() for k, v in m.named_parameters()}
    out.update({k: v.detach() for k, v in m.named_buffers()})
    return out


def compare_steps(a: List[dict], b: List[dict]) -> Tuple[int, float, str]:
    """(steps compared, largest relative difference, where) over the two runs' steps; inf when they disagree in
    the number of steps or in the names of the terms."""
    if len(a) != len(b):
        return min(len(a), len(b)), math.inf, f"{len(a)} vs {len(b)} steps"
    worst, where = 0.0, ""
    for sa, sb in zip(a, b):
        if list(sa["terms"]) != list(sb["terms"]):
            return len(a), math.inf, f"epoch {sa['epoch']} step {sa['step']}: terms {list(sa['terms'])} vs " \
                                     f"{list(sb['terms'])}"
        for name in list(sa["terms"]) + ["total"]:
            va = sa["total"] if name == "total" else sa["terms"][name]
            vb = sb["total"] if name == "total" else sb["terms"][name]
            r = _rel(va, vb)
            if r > worst:
                worst, where = r, f"epoch {sa['epoch']} step {sa['step']} term {name}: {va!r} vs {vb!r}"
    return len(a), worst, where


def compare_weights(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> Tuple[float, str]:
    if sorted(a) != sorted(b):
        return math.inf, f"different tensors: {sorted(set(a) ^ set(b))}"
    worst, where = 0.0, ""
    for k in sorted(a):
        x, y = a[k].double(), b[k].double()
        if x.shape != y.shape:
            return math.inf, f"{k}: shape {tuple(x.shape)} vs {tuple(y.shape)}"
        scale = max(x.abs().max().item() if x.numel() else 0.0, 1e-12)
        r = (x - y).abs().max().item() / scale if x.numel() else 0.0
        if r > worst:
            worst, where = r, k
    return worst, where


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m kdbench.twin", description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", required=True, help="the file KDBENCH_TRACE_STEPS named")
    ap.add_argument("--store", required=True, help="the sweep's results.db")
    ap.add_argument("--pair", action="append", required=True, help="A=B: method (or label) names of the twins")
    ap.add_argument("--rel-terms", type=float, default=1e-4)
    ap.add_argument("--rel-weights", type=float, default=1e-3)
    ap.add_argument("--min-steps", type=int, default=50)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)

    trace = read_trace(args.trace)
    runs = read_runs(args.store)
    results, ok = [], True
    for pair in args.pair:
        a_name, _, b_name = pair.partition("=")

        def of(name: str) -> Dict[Tuple[int, str], dict]:
            return {(r["seed"], r["model"]): r for r in runs if name in (r["method"], r["name"])}

        ra, rb = of(a_name), of(b_name)
        keys = sorted(set(ra) & set(rb))
        res = {"pair": pair, "runs": len(keys), "steps": 0, "max_rel_terms": 0.0, "max_rel_weights": 0.0,
               "where_terms": "", "where_weights": ""}
        if not keys:
            res["max_rel_terms"] = math.inf
            res["where_terms"] = f"no runs of both ({len(ra)} of {a_name}, {len(rb)} of {b_name})"
        for key in keys:
            x, y = ra[key], rb[key]
            if x["status"] != "done" or y["status"] != "done":
                res["max_rel_terms"] = math.inf
                res["where_terms"] = f"seed {key[0]}: status {x['status']} vs {y['status']}"
                continue
            sa, sb = trace.get(x["id"], []), trace.get(y["id"], [])
            # The first step sees the same weights and batch on both sides: it compares the two losses as functions;
            # later steps compare whole trajectories, where rounding differences grow with training.
            _, r0, _ = compare_steps(sa[:1], sb[:1])
            res["first_step_rel"] = max(res.get("first_step_rel", 0.0), r0)
            n, r, where = compare_steps(sa, sb)
            res["steps"] = n if not res["steps"] else min(res["steps"], n)
            if r >= res["max_rel_terms"]:
                res["max_rel_terms"], res["where_terms"] = r, f"seed {key[0]}: {where}"
            w, wwhere = compare_weights(load_weights(x["checkpoint"]), load_weights(y["checkpoint"]))
            if w >= res["max_rel_weights"]:
                res["max_rel_weights"], res["where_weights"] = w, f"seed {key[0]}: {wwhere}"
        res["passed"] = bool(keys) and res["steps"] >= args.min_steps and \
            res["max_rel_terms"] <= args.rel_terms and res["max_rel_weights"] <= args.rel_weights
        ok &= res["passed"]
        results.append(res)
        print(f"{'PASS' if res['passed'] else 'FAIL'} {pair}: {res['runs']} run pair(s), {res['steps']} steps, "
              f"first step max rel {res.get('first_step_rel', math.inf):.3g}, "
              f"terms max rel {res['max_rel_terms']:.3g} ({res['where_terms']}), weights max rel "
              f"{res['max_rel_weights']:.3g} ({res['where_weights']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rel_terms": args.rel_terms, "rel_weights": args.rel_weights, "min_steps": args.min_steps,
                       "pairs": results}, f, indent=1, default=str)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
