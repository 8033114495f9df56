#!/usr/bin/env python3
"""Paper figures for a kdbench report.

usage: figures.py REPORT_DIR

Reads REPORT_DIR/report.json (written by `kdbench report`, which runs this script) and writes each
figure as PDF, SVG and PNG, plus figures.json ([{"name", "caption"}], read by index.html's writer).
Sizes fit a two-column paper (3.3 in for one column, 7 in for two), one font family and size
everywhere, and every method keeps one colour in every figure (the reference method, i.e. the student alone, grey; teachers black).
Selection rules follow the tables: wherever one setting must stand for several, it is the one with
the best mean VALIDATION top-1; the plotted value is the test top-1.
Exits non-zero with one line on stderr saying why when it cannot run (e.g. matplotlib missing).
"""
import json
import math
import os
import sys
import warnings

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import MaxNLocator, NullFormatter
except Exception as e:  # noqa: BLE001 - any import problem means "no figures", said once
    sys.stderr.write(f"matplotlib is not importable by {sys.executable}: {e}\n")
    sys.exit(3)

plt.rcParams.update({
    "font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8,
    "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.2,
    "lines.markersize": 3.5, "savefig.dpi": 220, "svg.fonttype": "none", "pdf.fonttype": 42,
    "axes.spines.top": False, "axes.spines.right": False,
})
ONE_COL, TWO_COL = 3.3, 7.0
REFERENCE_COLOUR, TEACHER_COLOUR = "0.45", "0.05"


def mean(v):
    v = [x for x in v if x is not None]
    return sum(v) / len(v) if v else float("nan")


def std(v):
    """Sample std; NaN (no error bar, never a zero one) for fewer than two values."""
    if len(v) < 2:
        return float("nan")
    m = mean(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


def colours(rep):
    labels = sorted({s["label"] for s in rep["settings"] if not s["reference"]})
    cmap = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    col = {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}
    for s in rep["settings"]:
        if s["reference"]:
            col[s["label"]] = REFERENCE_COLOUR
    return col


def key(s):
    return (s["label"], s["model"], s["teachers"])


def namer(rep):
    """Display names: the method label, plus the student when several exist, plus the teachers when one
    method distils one student from several teacher sets."""
    models = {s["model"] for s in rep["settings"]}
    teacher_sets = {}
    for s in rep["settings"]:
        teacher_sets.setdefault((s["label"], s["model"]), set()).add(s["teachers"])

    def name(s):
        n = s["label"]
        if len(models) > 1:
            n += f" [{s['model']}]"
        if len(teacher_sets.get((s["label"], s["model"]), ())) > 1 and s["teachers"]:
            n += f" <- {s['teachers']}"
        return n
    return name


def slug(text):
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def save(fig, out, name, caption, made):
    for ext in ("pdf", "svg", "png"):
        tmp = os.path.join(out, f".{name}.tmp.{ext}")
        fig.savefig(tmp, format=ext, bbox_inches="tight")
        os.replace(tmp, os.path.join(out, f"{name}.{ext}"))
    plt.close(fig)
    made.append({"name": name, "caption": caption})


def references(ax, rep, model):
    """The reference (the same student trained alone) and the teachers' test top-1 as horizontal lines."""
    for row in rep["rows"]:
        if row["reference"] and row["model"] == model and row["test"]:
            ax.axhline(mean(row["test"]), color=REFERENCE_COLOUR, ls="--", lw=0.9, label=f"{row['label']} (student alone)")
    for t in rep["teachers"]:
        if t["test"] is not None:
            ax.axhline(t["test"], color=TEACHER_COLOUR, ls=":", lw=0.9, label=f"teacher {t['name']}")


def best_by_val(settings):
    return max(settings, key=lambda s: mean(s["val"]) if s["val"] else -math.inf)


def legend_below(ax, fig, n):
    ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=min(3, max(1, n)))


def fig_temperature(rep, col, name, out, made):
    models = sorted({s["model"] for s in rep["settings"]})
    for model in models:
        by = {}
        for s in rep["settings"]:
            if s["model"] == model and "temperature" in s["setting"] and s["test"]:
                by.setdefault(key(s), {}).setdefault(float(s["setting"]["temperature"]), []).append(s)
        by = {k: v for k, v in by.items() if len(v) >= 2}
        if not by:
            continue
        fig, ax = plt.subplots(figsize=(ONE_COL, 2.3))
        for k, per_t in sorted(by.items()):
            ts = sorted(per_t)
            best = [best_by_val(per_t[t]) for t in ts]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax.errorbar(ts, [mean(b["test"]) for b in best], yerr=[std(b["test"]) for b in best], marker="o",
                            capsize=2, color=col[k[0]], label=name(best[0]))
        references(ax, rep, model)
        ax.set_xscale("log", base=2)
        ts_all = sorted({t for per_t in by.values() for t in per_t})
        ax.set_xticks(ts_all, [f"{t:g}" for t in ts_all])
        ax.minorticks_off()
        ax.set_xlabel("temperature T")
        ax.set_ylabel("test top-1 (%)")
        ax.set_title(f"Accuracy against temperature ({model})")
        legend_below(ax, fig, len(by) + 2)
        fname = "accuracy_vs_temperature" + ("" if len(models) == 1 else "_" + slug(model))
        save(fig, out, fname, f"Test top-1 against temperature, student {model}: mean ± std over seeds; at each T "
             "the other hyperparameters are those best on validation. Dashed: student alone; dotted: teacher.",
             made)


def fig_heatmaps(rep, name, out, made):
    groups = {}
    for s in rep["settings"]:
        st = s["setting"]
        w = "alpha" if "alpha" in st else ("beta" if "beta" in st else None)
        if "temperature" in st and w and s["test"]:
            groups.setdefault((key(s), w), []).append(s)
    for (k, w), settings in sorted(groups.items()):
        ts = sorted({float(s["setting"]["temperature"]) for s in settings})
        ws = sorted({float(s["setting"][w]) for s in settings})
        if len(ts) < 2 or len(ws) < 2:
            continue
        cells = {}
        for s in settings:
            cells.setdefault((float(s["setting"]["temperature"]), float(s["setting"][w])), []).append(s)
        grid = [[mean(best_by_val(cells[(t, x)])["test"]) if (t, x) in cells else float("nan") for t in ts]
                for x in ws]
        chosen = best_by_val(settings)
        ci, cj = ws.index(float(chosen["setting"][w])), ts.index(float(chosen["setting"]["temperature"]))
        fig, ax = plt.subplots(figsize=(ONE_COL, 0.9 + 0.32 * len(ws)))
        im = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
        ax.set_xticks(range(len(ts)), [f"{t:g}" for t in ts])
        ax.set_yticks(range(len(ws)), [f"{x:g}" for x in ws])
        ax.set_xlabel("temperature T")
        ax.set_ylabel(w)
        finite = [v for r in grid for v in r if not math.isnan(v)]
        mid = (min(finite) + max(finite)) / 2
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=6.5,
                            color="white" if v < mid else "black")
        ax.add_patch(Rectangle((cj - 0.5, ci - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
        fig.colorbar(im, ax=ax, label="test top-1 (%)")
        ax.set_title(f"{name(settings[0])}: test top-1 over T × {w}")
        save(fig, out, f"heatmap_{slug(name(settings[0]))}_{w}",
             f"{name(settings[0])}: mean test top-1 over temperature × {w}; the red box is the setting chosen on "
             "validation.", made)


def series(per_seed, n):
    return [mean([s[i] for s in per_seed if i < len(s) and s[i] is not None]) for i in range(n)]


def epoch_axis(ax, n):
    """Whole epochs on the x axis, whatever their number (one epoch included)."""
    if n <= 15:
        ax.set_xticks(range(1, n + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, n + 0.5)


def stage_bounds(points):
    return [i + 0.5 for i in range(1, len(points)) if points[i][0] != points[i - 1][0]]


def fig_curves(rep, col, name, out, made):
    rows = [r for r in rep["rows"] if r["curves"]["metrics"].get("val.top1")]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(ONE_COL, 2.3))
    models = sorted({r["model"] for r in rows})
    for r in rows:
        n = len(r["curves"]["points"])
        m = models.index(r["model"])  # several students: one line style and marker each, colour = method
        ax.plot(range(1, n + 1), series(r["curves"]["metrics"]["val.top1"], n), marker="osD^v"[m % 5],
                ls=["-", "--", ":", "-."][m % 4], color=col[r["label"]], label=name(r))
        for b in stage_bounds(r["curves"]["points"]):
            ax.axvline(b, color=col[r["label"]], lw=0.6, ls=":")
    ax.set_xlabel("epoch")
    epoch_axis(ax, max(len(r["curves"]["points"]) for r in rows))
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("Validation accuracy, each method's best setting")
    legend_below(ax, fig, len(rows))
    save(fig, out, "training_curves", "Validation top-1 against epoch for each method's best setting (mean over "
         "seeds); dotted verticals separate training stages.", made)

    # Loss terms: one small panel per method, each unweighted term as the method logs it.
    ncol = min(4, len(rows))
    nrow = math.ceil(len(rows) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(TWO_COL, 1.7 * nrow + 0.3), squeeze=False)
    styles = ["-", "--", "-.", ":"]
    for a, r in zip(axes.flat, rows):
        n = len(r["curves"]["points"])
        terms = sorted(t for t in r["curves"]["metrics"] if t.startswith("loss."))
        for i, t in enumerate(terms):
            # markers on every term when epochs are few (a term logged in one stage only is then visible)
            a.plot(range(1, n + 1), series(r["curves"]["metrics"][t], n), color=col[r["label"]],
                   ls=styles[i % len(styles)], marker="osD^v<>"[i % 7] if n <= 15 or t == "loss.total" else None,
                   markersize=3, label=t[5:])
        for b in stage_bounds(r["curves"]["points"]):
            a.axvline(b, color="0.6", lw=0.6, ls=":")
        a.set_title(name(r), fontsize=7)
        a.set_xlabel("epoch")
        epoch_axis(a, n)
        a.legend(frameon=False, fontsize=6)
    for a in list(axes.flat)[len(rows):]:
        a.axis("off")
    axes[0][0].set_ylabel("loss (unweighted term)")
    fig.tight_layout()
    save(fig, out, "loss_terms", "Training loss terms (unweighted, mean over each epoch and over seeds) for each "
         "method's best setting.", made)


def fig_bars(rep, col, name, out, made):
    rows = [r for r in rep["rows"] if r["test"]]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(TWO_COL if len(rows) > 6 else ONE_COL, 2.4))
    ms = [mean(r["test"]) for r in rows]
    cis = [r["test_summary"]["ci95"] for r in rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax.bar(range(len(rows)), ms, yerr=[c if c is not None else float("nan") for c in cis], capsize=2,
               color=[col[r["label"]] for r in rows])
    # Zoom on the values (a CI reaching past 0 or 100 % is cut at the axis).
    tops = [min(100, m + (c or 0)) for m, c in zip(ms, cis)] + [t["test"] for t in rep["teachers"]
                                                               if t["test"] is not None]
    lo = max(0, min(m - (c or 0) for m, c in zip(ms, cis)))
    hi = max(tops)
    pad = 0.15 * (hi - lo) + 0.5
    ax.set_ylim(max(0, lo - pad), min(100, hi + pad))
    models = sorted({r["model"] for r in rows})
    if len(models) == 1:
        references(ax, rep, models[0])
    ax.set_xticks(range(len(rows)), [name(r) for r in rows], rotation=30, ha="right")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Methods at their best validation setting")
    if len(models) == 1 and rep["teachers"]:
        ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=2)
    save(fig, out, "methods_bar", "Test top-1 of each method at its best validation setting: mean over seeds with "
         "the 95% Student-t interval (none for one seed).", made)


def fig_cost(rep, col, out, made):
    rows = [r for r in rep["rows"] if r["test"] and r["params"]]
    if len({r["model"] for r in rows}) < 2:
        return
    # Latency (batch-1 inference on the sweep's device, recorded by each run) when the runs have it.
    keys = [("params", "parameters", "size"), ("macs", "MACs per image", "compute")]
    if any(r.get("latency_ms") for r in rows):
        keys.append(("latency_ms", "latency (ms, batch 1)", "latency"))
    fig, axes = plt.subplots(1, len(keys), figsize=(TWO_COL, 2.4))
    by = {}
    for r in rows:
        by.setdefault((r["label"], r["teachers"]), []).append(r)
    for (label, _), rs in sorted(by.items()):
        for ax, (k, _, _) in zip(axes, keys):
            rs_k = sorted([r for r in rs if r[k]], key=lambda r: r[k])
            if not rs_k:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax.errorbar([r[k] for r in rs_k], [mean(r["test"]) for r in rs_k], yerr=[std(r["test"]) for r in rs_k],
                            marker="o", capsize=2, color=col[label], label=label)
            for r in rs_k:
                ax.annotate(r["model"], (r[k], mean(r["test"])), fontsize=5.5, xytext=(3, -8),
                            textcoords="offset points", color="0.3")
    for ax, (k, what, title) in zip(axes, keys):
        xs = [r[k] for r in rows if r.get(k)]
        if xs and max(xs) >= 10 * min(xs):
            # Log scale over a decade or more; labels on the decades only (minor labels collide).
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.set_xlabel(f"student {what}")
        ax.set_title(f"Accuracy against student {title}")
    axes[0].set_ylabel("test top-1 (%)")
    axes[0].legend(frameon=False, fontsize=6)
    fig.tight_layout()
    save(fig, out, "accuracy_vs_cost", "Test top-1 (mean ± std over seeds, best validation setting) against the "
         "student's parameters, MACs" + (" and batch-1 inference latency" if len(keys) > 2 else "") + ".", made)


def cd_cliques(ranks, cd):
    """Maximal runs of methods (sorted by mean rank) whose mean ranks differ by less than the critical
    difference: the groups a critical-difference diagram joins with a bar."""
    groups, last = [], -1
    for i in range(len(ranks)):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] - ranks[i] < cd:
            j += 1
        if j > i and j > last:
            groups.append((i, j))
            last = j
    return groups


def fig_critical_difference(rep, out, made):
    """Demsar's (2006) critical-difference diagram: the methods' mean ranks over the blocks (data sets and
    teacher-student pairs) on one axis, best on the left, the Nemenyi critical difference as a bar above it,
    and a thick line under each group of methods whose mean ranks differ by less than it."""
    r = rep.get("ranks")
    if not r or len(r["methods"]) < 2:
        return
    names, ranks = r["methods"], r["mean_ranks"]
    cd = r["nemenyi"]["critical_difference"]
    k = len(names)
    groups = cd_cliques(ranks, cd)
    left = (k + 1) // 2  # the better half is labelled on the left, the rest on the right
    step, top_of_labels = 0.28, 0.35 + 0.14 * len(groups)
    rows = max(left, k - left)
    fig, ax = plt.subplots(figsize=(ONE_COL if k <= 6 else TWO_COL, 0.9 + 0.2 * rows + 0.1 * len(groups)))
    lo, hi = 1, max(k, 2)
    ax.plot([lo, hi], [0, 0], color="black", lw=0.9)
    for x in range(lo, hi + 1):
        ax.plot([x, x], [0, 0.1], color="black", lw=0.9)
        ax.text(x, 0.16, str(x), ha="center", va="bottom", fontsize=7)
    for x in range(lo, hi):
        ax.plot([x + 0.5, x + 0.5], [0, 0.05], color="black", lw=0.6)
    # The critical difference, from rank 1.
    ax.plot([lo, lo + cd], [0.65, 0.65], color="black", lw=1.2)
    for x in (lo, lo + cd):
        ax.plot([x, x], [0.58, 0.72], color="black", lw=1.0)
    ax.text(lo + cd / 2, 0.76, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=7)
    pad = 0.08 * (hi - lo) + 0.15
    for i, (name, rank) in enumerate(zip(names, ranks)):
        if i < left:
            y, x_end, ha = -(top_of_labels + i * step), lo - pad, "right"
        else:
            y, x_end, ha = -(top_of_labels + (k - 1 - i) * step), hi + pad, "left"
        ax.plot([rank, rank, x_end], [0, y, y], color="0.25", lw=0.8)
        ax.text(x_end + (-0.04 if ha == "right" else 0.04), y, f"{name} ({rank:.2f})", ha=ha, va="center",
                fontsize=7)
    for g, (i, j) in enumerate(groups):
        y = -(0.2 + 0.14 * g)
        ax.plot([ranks[i] - 0.03, ranks[j] + 0.03], [y, y], color="black", lw=2.6, solid_capstyle="butt")
    ax.set_xlim(lo - pad, max(hi + pad, lo + cd + 0.1))  # a CD longer than the axis is drawn whole
    ax.set_ylim(-(top_of_labels + (rows - 1) * step) - 0.2, 1.05)
    ax.axis("off")
    f = r["friedman"]
    save(fig, out, "critical_difference",
         f"Critical-difference diagram (Demšar 2006): mean rank of each method over {len(r['blocks'])} blocks "
         "(data set, student model and root teacher; 1 = best test top-1 at the best setting on validation). "
         f"Methods joined by a thick line are not shown to differ (Nemenyi, alpha {r['nemenyi']['alpha']:g}, "
         f"CD = {cd:.2f}). Friedman chi2 = {f['chi2']:.2f} ({f['dof']:g} dof), p = {f['p']:.3g}.", made)


def main(out):
    with open(os.path.join(out, "report.json")) as f:
        rep = json.load(f)
    col = colours(rep)
    name = namer(rep)
    made = []
    fig_temperature(rep, col, name, out, made)
    fig_heatmaps(rep, name, out, made)
    fig_curves(rep, col, name, out, made)
    fig_bars(rep, col, name, out, made)
    fig_cost(rep, col, out, made)
    fig_critical_difference(rep, out, made)
    tmp = os.path.join(out, ".figures.json.tmp")
    with open(tmp, "w") as f:
        json.dump(made, f, indent=1)
    os.replace(tmp, os.path.join(out, "figures.json"))
    print(f"{len(made)} figures in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: figures.py REPORT_DIR")
    main(sys.argv[1])
