#!/usr/bin/env python3
"""Reference values for kdbench's report statistics (reports/stats.h, reports/power.h), from scipy.stats.

Writes tests/data/reference/stats.json (or $KDBENCH_REFS_OUT/stats.json): fixed inputs and what scipy
computes on them, each case naming the scipy function it called. Nothing here is kdbench code; the C++
test (tests/test_reports_stats_reference.cpp) compares kdbench's own implementations with these values.

Where scipy has no function, the value is computed here *by the definition*, from scipy primitives, and
the case says so:
  * Holm-Bonferroni (scipy has none): sort ascending, multiply the i-th smallest (0-based) by m - i, take the
    running maximum, cap at 1 (Holm 1979);
  * the power of a two-sided t-test: nct.sf(tc, df, nc) + nct.cdf(-tc, df, nc) with tc = t.ppf(1 - alpha/2, df);
  * the smallest detectable difference: scipy.optimize.brentq on that power minus the target (0.8);
  * the seeds needed: the smallest n (from 2 up) whose power reaches the target;
  * the Nemenyi critical difference (Demsar 2006, eq. 5): studentized_range.ppf(1 - alpha, k, inf) / sqrt 2
    * sqrt(k (k + 1) / (6 N));
  * Friedman's mean ranks: scipy.stats.rankdata of the negated values (rank 1 = best) averaged over blocks.

Run with the set-up's venv:  ~/.cache/kdbench/venv/bin/python tests/data/reference/generators/gen_stats.py
"""
import json
import math
import os
import platform
import sys

import numpy as np
import scipy
from scipy import optimize, stats

OUT = os.environ.get("KDBENCH_REFS_OUT", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALPHA, POWER = 0.05, 0.8


def f(x):
    return float(x)


def t_power(nc, df, alpha=ALPHA):
    """P(T > tc) + P(T < -tc) for T ~ nct(df, nc). scipy 1.17's nct.cdf returns NaN far in the lower tail for
    some large nc (e.g. nct.cdf(-4.30, 2, 11.53)); there the lower tail is taken as nct.sf(tc, df, -nc), the
    same probability by the noncentral t's symmetry (it is below 1e-18 in every such case here)."""
    tc = stats.t.ppf(1 - alpha / 2, df)
    lower = stats.nct.cdf(-tc, df, nc)
    if not np.isfinite(lower):
        lower = stats.nct.sf(tc, df, -nc)
    return f(stats.nct.sf(tc, df, nc) + lower)


def power_paired(delta, sd, n, alpha=ALPHA):
    return t_power(delta / sd * math.sqrt(n), n - 1, alpha)


def power_two_sample(delta, sd, n1, n2, alpha=ALPHA):
    return t_power(delta / (sd * math.sqrt(1 / n1 + 1 / n2)), n1 + n2 - 2, alpha)


def power(design, delta, n1, n2):
    if design["paired"]:
        return power_paired(delta, design["sd"], n1)
    return power_two_sample(delta, design["sd"], n1, n2)


def detectable(design, n1, n2):
    g = lambda e: power(design, e * design["sd"], n1, n2) - POWER  # noqa: E731
    hi = 1.0
    while g(hi) < 0:
        hi *= 2
    return f(optimize.brentq(g, 0.0, hi, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500) * design["sd"])


def seeds_needed(design, delta, cap=10000):
    for n in range(2, cap + 1):
        if power(design, abs(delta), n, n) >= POWER:
            return n
    return None


def holm(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out, running = [0.0] * m, 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out


def nemenyi_cd(k, n, alpha=ALPHA):
    q = f(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))
    return q, q * math.sqrt(k * (k + 1) / (6 * n))


def main():
    ref = {"provenance": {
        "generator": "tests/data/reference/generators/gen_stats.py",
        "scipy": scipy.__version__, "numpy": np.__version__, "python": platform.python_version(),
        "how": "each case names the scipy.stats function it called on its inputs; values are Python float reprs "
               "(17 significant digits). Holm, the power, the detectable difference, the seeds needed, the "
               "Nemenyi critical difference and Friedman's mean ranks are computed by their definitions from "
               "scipy primitives (see the generator's docstring), as scipy has no function for them."}}

    ref["t_ppf"] = {"function": "scipy.stats.t.ppf(p, df)", "cases": [
        {"p": p, "df": df, "value": f(stats.t.ppf(p, df))}
        for p, df in [(0.975, 1), (0.975, 2), (0.975, 4), (0.975, 4.5), (0.9, 3.7), (0.995, 30), (0.6, 2),
                      (0.025, 7), (0.975, 120)]]}
    ref["t_cdf"] = {"function": "scipy.stats.t.cdf(x, df)", "cases": [
        {"x": x, "df": df, "value": f(stats.t.cdf(x, df))}
        for x, df in [(1.0, 1), (-3.0, 2), (2.0, 4), (1.3, 7.5), (-0.4, 5.52), (6.0, 3), (-8.5, 2.94)]]}
    ref["chi2_sf"] = {"function": "scipy.stats.chi2.sf(x, df)", "cases": [
        {"x": x, "df": df, "value": f(stats.chi2.sf(x, df))}
        for x, df in [(6.0, 2), (0.5, 1), (3.2, 4), (15.0, 3), (40.0, 9), (1.0, 7)]]}

    welch = []
    for a, b in [([1, 2, 3, 4], [2, 4, 6, 8, 10]),
                 ([27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4],
                  [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]),
                 ([70.01, 70.57, 69.45], [65.79, 66.91, 64.67]),
                 ([71.0, 72.2, 70.5, 71.6], [70.1, 71.3, 69.8])]:
        r = stats.ttest_ind(a, b, equal_var=False)
        ci = r.confidence_interval(0.95)
        welch.append({"a": a, "b": b, "t": f(r.statistic), "df": f(r.df), "p": f(r.pvalue),
                      "ci95_half_width": f((ci.high - ci.low) / 2)})
    ref["welch"] = {"function": "scipy.stats.ttest_ind(a, b, equal_var=False); .df; .confidence_interval(0.95) "
                    "(half-width = (high - low) / 2)", "cases": welch}

    paired = []
    for a, b in [([72.4, 73.0, 71.9], [70.1, 71.3, 69.8]),
                 ([1.0, 2.5, 2.0, 4.0, 3.5], [0.5, 2.0, 2.5, 3.0, 2.0]),
                 ([69.0, 71.5, 68.1], [70.1, 71.3, 69.8]),
                 ([10.0, 10.2], [9.1, 9.9])]:
        r = stats.ttest_rel(a, b)
        ci = r.confidence_interval(0.95)
        d = np.subtract(a, b)
        paired.append({"a": a, "b": b, "t": f(r.statistic), "df": f(r.df), "p": f(r.pvalue),
                       "mean_difference": f(np.mean(d)), "sd_difference": f(np.std(d, ddof=1)),
                       "ci95_half_width": f((ci.high - ci.low) / 2)})
    ref["paired"] = {"function": "scipy.stats.ttest_rel(a, b); .df; .confidence_interval(0.95); numpy.std(a - b, "
                     "ddof=1)", "cases": paired}

    ref["holm"] = {"function": "by definition (Holm 1979; scipy has no Holm): sort ascending, the i-th smallest "
                   "(0-based) times m - i, running maximum, capped at 1", "cases": [
        {"p": p, "adjusted": holm(p)}
        for p in [[0.01, 0.04, 0.03, 0.005], [0.2, 0.2, 0.01], [0.5], [0.04, 0.3, 0.001, 0.02, 0.9, 0.015],
                  [0.0075, 0.0372, 0.5101, 0.0203]]]}

    friedman = []
    for data in [[[1, 2, 3], [2, 3, 4], [3, 4, 5]],
                 [[72.4, 70.9, 69.0, 70.1], [81.2, 80.0, 80.0, 79.3], [65.0, 66.1, 63.9, 64.2],
                  [90.3, 89.9, 88.0, 89.1], [55.5, 55.5, 55.5, 54.0]],
                 [[0.8, 0.7], [0.9, 0.95], [0.6, 0.5]],
                 [[84.0, 87.5, 85.3], [87.0, 90.5, 88.3]]]:
        treatments = list(zip(*data))  # scipy takes one sequence per treatment, over the blocks
        r = stats.friedmanchisquare(*treatments) if len(treatments) >= 3 else None
        ranks = np.mean([stats.rankdata(-np.asarray(row)) for row in data], axis=0)
        case = {"data_by_block": data, "mean_ranks": [f(x) for x in ranks]}
        if r is not None:
            case.update({"chi2": f(r.statistic), "df": len(treatments) - 1, "p": f(r.pvalue)})
        friedman.append(case)
    ref["friedman"] = {"function": "scipy.stats.friedmanchisquare(*treatments) (chi2 and p; needs 3 or more "
                       "treatments); mean ranks = mean over blocks of scipy.stats.rankdata(-values)",
                       "cases": friedman}

    ref["nct_cdf"] = {"function": "scipy.stats.nct.cdf(x, df, nc)", "cases": [
        {"x": x, "df": df, "nc": nc, "value": f(stats.nct.cdf(x, df, nc))}
        for x, df, nc in [(2.0, 4, 1.5), (-1.0, 4, 1.5), (3.0, 7.5, -2.0), (10.0, 2, 8.0), (4.302652729749464, 2, 3.0),
                          (0.5, 1, 0.0), (2.5, 29, 2.8), (-2.0, 10, -1.0), (12.0, 40, 11.0)]]}

    ref["power"] = {"function": "by definition: nct.sf(tc, df, nc) + nct.cdf(-tc, df, nc), tc = t.ppf(0.975, df) "
                    "(see t_power for the lower tail where scipy's nct.cdf gives NaN)",
                    "alpha": ALPHA, "cases": [
        {"nc": nc, "df": df, "value": t_power(nc, df)}
        for nc, df in [(2.5, 4), (0.0, 2), (-3.0, 9), (5.0, 2), (1.0, 30), (8.0, 5), (11.53, 2)]]}

    designs = []
    for design, n1, n2, delta in [({"paired": True, "sd": 0.3055050463303893}, 3, 3, 2.0333333333333),
                                  ({"paired": True, "sd": 1.3}, 3, 3, 1.0),
                                  ({"paired": True, "sd": 0.69}, 5, 5, 0.25),
                                  ({"paired": False, "sd": 0.8}, 4, 3, 0.9),
                                  ({"paired": False, "sd": 2.0}, 3, 3, 4.0)]:
        designs.append({"design": design, "n1": n1, "n2": n2, "delta": delta,
                        "power": power(design, delta, n1, n2),
                        "detectable_difference": detectable(design, n1, n2),
                        "seeds_needed": seeds_needed(design, delta)})
    ref["designs"] = {"function": "by definition from scipy.stats.t.ppf and scipy.stats.nct (paired: nc = delta / sd "
                      "* sqrt(n1), df = n1 - 1; two samples: nc = delta / (sd sqrt(1/n1 + 1/n2)), df = n1 + n2 - 2); "
                      "detectable_difference by scipy.optimize.brentq at power 0.8; seeds_needed = smallest n >= 2 "
                      "(per side) with power >= 0.8", "alpha": ALPHA, "power": POWER, "cases": designs}

    nem = []
    for k, n in [(2, 5), (3, 2), (4, 9), (5, 10), (10, 14), (21, 2)]:
        q, cd = nemenyi_cd(k, n)
        nem.append({"k": k, "n": n, "q_alpha": q, "critical_difference": cd,
                    "studentized_range_ppf": f(stats.studentized_range.ppf(1 - ALPHA, k, np.inf))})
    ref["nemenyi"] = {"function": "scipy.stats.studentized_range.ppf(0.95, k, numpy.inf); q_alpha = that / sqrt 2; "
                      "critical difference = q_alpha sqrt(k (k + 1) / (6 n)) (Demsar 2006, eq. 5)", "alpha": ALPHA,
                      "cases": nem}

    ref["report_case"] = report_case()
    path = os.path.join(OUT, "stats.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(ref, fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)
    print(f"wrote {path}", file=sys.stderr)


def report_case():
    """A comparison table's numbers: test top-1 per seed of the reference (the student alone) and four methods,
    three with the reference's seeds (paired) and one with a seed more (Welch); raw p, Holm over the four,
    the detectable difference and the seeds needed, and the seeds a target difference needs."""
    seeds = [0, 1, 2]
    reference = [70.1, 71.3, 69.8]
    methods = {"logit_kd": ([72.4, 73.0, 71.9], seeds), "fitnets": ([70.9, 72.6, 70.0], seeds),
               "attention": ([69.0, 71.5, 68.1], seeds), "dkd": ([71.0, 72.2, 70.5, 71.6], [0, 1, 2, 3])}
    target = 1.0
    rows = {}
    for name, (test, s) in methods.items():
        if s == seeds:
            r = stats.ttest_rel(test, reference)
            d = np.subtract(test, reference)
            sd = f(np.std(d, ddof=1))
            design, n1, n2 = {"paired": True, "sd": sd}, len(d), len(d)
            kind = "paired"
        else:
            r = stats.ttest_ind(test, reference, equal_var=False)
            n1, n2 = len(test), len(reference)
            sd = f(math.sqrt(((n1 - 1) * np.var(test, ddof=1) + (n2 - 1) * np.var(reference, ddof=1)) / (n1 + n2 - 2)))
            design = {"paired": False, "sd": sd}
            kind = "welch"
        ci = r.confidence_interval(0.95)
        diff = f(np.mean(test) - np.mean(reference))
        rows[name] = {"test": test, "seeds": s, "kind": kind, "p": f(r.pvalue), "difference": diff,
                      "ci95_half_width": f((ci.high - ci.low) / 2), "sd": sd,
                      "detectable_difference": detectable(design, n1, n2),
                      "seeds_needed": seeds_needed(design, diff),
                      "seeds_for_target": seeds_needed(design, target)}
    names = list(rows)
    for name, adj in zip(names, holm([rows[n]["p"] for n in names])):
        rows[name]["p_holm"] = adj
    return {"what": "reference = the student alone; paired t (scipy.stats.ttest_rel) where the seeds match, Welch "
                    "(scipy.stats.ttest_ind(equal_var=False)) where they do not; Holm over the four rows; sd = of the "
                    "paired differences, or pooled for Welch's row; detectable_difference and seeds_needed at alpha "
                    "0.05, power 0.8 as in 'designs'; seeds_for_target = the seeds a difference of target_difference "
                    "needs", "reference": {"test": reference, "seeds": seeds}, "target_difference": target,
            "methods": rows}


if __name__ == "__main__":
    main()
