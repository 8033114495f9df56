#!/usr/bin/env python3
"""Paper figures for a kdbench report.

Reads REPORT_DIR/report.json (written by `kdbench report`) and writes each figure as PDF, SVG and
PNG, plus figures.json (the PNG names, for index.html). Sizes fit a two-column paper: 3.3 in wide
for one column, 7 in for two; one font; every method keeps one colour in every figure.
"""
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({
    "font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8,
    "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2,
    "lines.markersize": 3.5, "savefig.dpi": 200, "svg.fonttype": "none", "pdf.fonttype": 42,
})
ONE_COL, TWO_COL = 3.3, 7.0


def mean(v):
    return sum(v) / len(v) if v else float("nan")


def std(v):
    if len(v) < 2:
        return 0.0
    m = mean(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def colours(labels):
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(sorted(labels))}


def save(fig, out, name, made):
    for ext in ("pdf", "svg", "png"):
        fig.savefig(os.path.join(out, f"{name}.{ext}"), bbox_inches="tight")
    plt.close(fig)
    made.append(f"{name}.png")


def references(ax, rep, model=None):
    for row in rep["rows"]:
        if row["method"] == "baseline" and row["test"] and (model is None or row["model"] == model):
            ax.axhline(mean(row["test"]), color="0.4", ls="--", lw=0.9, label=f"baseline ({row['model']})")
    for i, (name, acc) in enumerate(sorted(rep["teachers"].items())):
        ax.axhline(acc, color="0.1", ls=":", lw=0.9, label=f"teacher {name}")


def fig_temperature(rep, col, out, made):
    # For each method that sweeps temperature: per T, the setting with the best mean VALIDATION accuracy
    # among the other hyperparameters, plotted with its test mean and std over seeds.
    by = {}
    for s in rep["settings"]:
        if "temperature" in s["setting"] and s["test"]:
            by.setdefault(s["label"], {}).setdefault(float(s["setting"]["temperature"]), []).append(s)
    by = {k: v for k, v in by.items() if len(v) >= 2}
    if not by:
        return
    fig, ax = plt.subplots(figsize=(ONE_COL, 2.4))
    for label, per_t in sorted(by.items()):
        ts = sorted(per_t)
        best = [max(per_t[t], key=lambda s: mean(s["val"])) for t in ts]
        ax.errorbar(ts, [mean(b["test"]) for b in best], yerr=[std(b["test"]) for b in best], marker="o",
                    capsize=2, color=col[label], label=label)
    references(ax, rep)
    ax.set_xscale("log", base=2)
    ts_all = sorted({t for per_t in by.values() for t in per_t})
    ax.set_xticks(ts_all, [f"{t:g}" for t in ts_all])
    ax.minorticks_off()
    ax.set_xlabel("temperature T")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Accuracy against temperature (mean ± std over seeds)")
    ax.legend(loc="best", frameon=False)
    save(fig, out, "accuracy_vs_temperature", made)


def fig_heatmaps(rep, out, made):
    by = {}
    for s in rep["settings"]:
        st = s["setting"]
        w = "alpha" if "alpha" in st else ("beta" if "beta" in st else None)
        if "temperature" in st and w and s["test"]:
            by.setdefault((s["label"], w), {})[(float(st["temperature"]), float(st[w]))] = mean(s["test"])
    for (label, w), cells in sorted(by.items()):
        ts = sorted({k[0] for k in cells})
        ws = sorted({k[1] for k in cells})
        if len(ts) < 2 or len(ws) < 2:
            continue
        grid = [[cells.get((t, x), float("nan")) for t in ts] for x in ws]
        fig, ax = plt.subplots(figsize=(ONE_COL, 0.5 + 0.45 * len(ws) + 0.8))
        im = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
        ax.set_xticks(range(len(ts)), [f"{t:g}" for t in ts])
        ax.set_yticks(range(len(ws)), [f"{x:g}" for x in ws])
        ax.set_xlabel("temperature T")
        ax.set_ylabel(w)
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=6.5, color="white")
        fig.colorbar(im, ax=ax, label="test top-1 (%)")
        ax.set_title(f"{label}: mean test top-1 over T × {w}")
        save(fig, out, f"heatmap_{label}_{w}", made)


def fig_curves(rep, col, out, made):
    rows = [r for r in rep["rows"] if r["curves"].get("val.top1")]
    if not rows:
        return
    terms = sorted({k for r in rows for k in r["curves"] if k.startswith("loss.") and k != "loss.total"})
    fig, axes = plt.subplots(1, 2, figsize=(TWO_COL, 2.5))
    for r in rows:
        seeds = r["curves"]["val.top1"]
        n = min(len(s) for s in seeds)
        xs = list(range(1, n + 1))
        ys = [mean([s[i] for s in seeds]) for i in range(n)]
        axes[0].plot(xs, ys, marker="o", color=col[r["label"]], label=r["label"])
        seeds = r["curves"].get("loss.total", [])
        if seeds:
            n = min(len(s) for s in seeds)
            axes[1].plot(range(1, n + 1), [mean([s[i] for s in seeds]) for i in range(n)], marker="o",
                         color=col[r["label"]], label=r["label"])
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("validation top-1 (%)")
    axes[0].set_title("Validation accuracy (best setting, mean over seeds)")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("total weighted loss")
    axes[1].set_title("Training loss (terms: " + ", ".join(t[5:] for t in terms) + ")")
    axes[0].legend(frameon=False, ncol=2)
    fig.tight_layout()
    save(fig, out, "training_curves", made)


def fig_bars(rep, col, out, made):
    rows = [r for r in rep["rows"] if r["test"]]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(TWO_COL if len(rows) > 6 else ONE_COL, 2.6))
    names = [r["label"] if len({x["model"] for x in rows}) == 1 else f"{r['label']}\n{r['model']}" for r in rows]
    ms = [mean(r["test"]) for r in rows]
    cis = [r["ci"] or 0 for r in rows]
    ax.bar(range(len(rows)), ms, yerr=cis, capsize=2, color=[col[r["label"]] for r in rows])
    lo = min(m - c for m, c in zip(ms, cis))
    hi = max([m + c for m, c in zip(ms, cis)] + list(rep["teachers"].values()))
    ax.set_ylim(max(0, lo - 0.15 * (hi - lo + 1)), hi + 0.1 * (hi - lo + 1))
    references(ax, rep)
    ax.set_xticks(range(len(rows)), names, rotation=30, ha="right")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Methods at their best validation setting (95% CI)")
    ax.legend(frameon=False, loc="lower right")
    save(fig, out, "methods_bar", made)


def fig_cost(rep, col, out, made):
    rows = [r for r in rep["rows"] if r["test"] and r["params"]]
    if len({r["model"] for r in rows}) < 2:
        return
    fig, axes = plt.subplots(1, 2, figsize=(TWO_COL, 2.5))
    for r in rows:
        for ax, key in zip(axes, ("params", "macs")):
            ax.errorbar(r[key], mean(r["test"]), yerr=std(r["test"]), marker="o", color=col[r["label"]],
                        label=r["label"])
    for ax, key in zip(axes, ("parameters", "MACs")):
        ax.set_xscale("log")
        ax.set_xlabel(f"student {key}")
        ax.set_ylabel("test top-1 (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    axes[0].legend(uniq.values(), uniq.keys(), frameon=False)
    axes[0].set_title("Accuracy against student cost")
    fig.tight_layout()
    save(fig, out, "accuracy_vs_cost", made)


def main(out):
    with open(os.path.join(out, "report.json")) as f:
        rep = json.load(f)
    col = colours({s["label"] for s in rep["settings"]})
    made = []
    fig_temperature(rep, col, out, made)
    fig_heatmaps(rep, out, made)
    fig_curves(rep, col, out, made)
    fig_bars(rep, col, out, made)
    fig_cost(rep, col, out, made)
    tmp = os.path.join(out, "figures.json.tmp")
    with open(tmp, "w") as f:
        json.dump(made, f)
    os.replace(tmp, os.path.join(out, "figures.json"))
    print(f"{len(made)} figures in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: figures.py REPORT_DIR")
    main(sys.argv[1])
