"""Figures of quality against a cost: sampling steps (NFE), data size, training FLOPs."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from flowstudy.figures.common import ci
from flowstudy.labels import difference_labels, seedless
from flowstudy.metrics import METRICS
from flowstudy.metrics import label as metric_label
from flowstudy.plots import pyplot, save_figure
from flowstudy.results import RunResult, checkpoint_dir_in, evaluation_records


def _evaluations(run: RunResult, study: Path) -> list[dict[str, Any]]:
    """The run's own end-of-run evaluation and every ``python -m flowstudy.sample`` record beside
    its checkpoint in ``study``: (solver, nfe, metrics) each."""
    solver = run.config.get("sample", {}).get("solver", "?")
    found = [{"solver": solver, "nfe": run.nfe, "metrics": run.metrics}] if run.nfe else []
    found += [{"solver": e["sample"]["solver"], "nfe": e["nfe"], "metrics": e["metrics"]}
              for e in evaluation_records(checkpoint_dir_in(study, run))]
    unique = {(e["solver"], e["nfe"]): e for e in found}
    return list(unique.values())


Point = tuple[str, float, float, float | None]  # (line, x, metric value, its floor)


def _draw_budget(points: list[Point], png: Path, title: str, xlabel: str, metric: str) -> bool:
    """One line per label of the mean over the points sharing an x, error bars its 95% interval
    over seeds; False unless some line
    has two x values."""
    lines: dict[str, dict[float, list[tuple[float, float | None]]]] = defaultdict(
        lambda: defaultdict(list))
    for label, x, value, floor in points:
        lines[label][x].append((value, floor))
    if not any(len(xs) > 1 for xs in lines.values()):
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    colors = plt.get_cmap("tab10")
    # The same metric between two real sets, what a perfect model would score: one gray line
    # when every point has the same floor (the same data), else a line per line, in its color.
    all_floors = {round(f, 12) for by_x in lines.values() for points in by_x.values()
                  for _, f in points if f is not None}
    ticks = sorted({x for by_x in lines.values() for x in by_x})
    if len(all_floors) == 1:
        ax.plot([ticks[0], ticks[-1]], [all_floors.pop()] * 2, linestyle="--", linewidth=1,
                color="tab:gray", label="floor (real vs real)")
    for i, label in enumerate(sorted(lines)):
        by_x, color = lines[label], colors(i % 10)
        xs = sorted(by_x)
        ivs = [ci([v for v, _ in by_x[x]]) for x in xs]
        means = [iv.mean for iv in ivs]
        errors = np.array([[iv.mean - iv.low, iv.high - iv.mean] if iv.known else [0.0, 0.0]
                           for iv in ivs]).T
        ax.errorbar(xs, means, yerr=errors, marker="o", markersize=4, capsize=3, linewidth=1.5,
                    color=color, label=label or "mean, 95% interval over seeds")
        floors = [(x, [f for _, f in by_x[x] if f is not None]) for x in xs]
        floors = [(x, statistics.fmean(f)) for x, f in floors if f]
        if floors and all_floors:
            ax.plot(*zip(*floors, strict=True), linestyle="--", linewidth=1, color=color,
                    label=f"{label}: floor (real vs real)" if label else "floor (real vs real)")
    ax.set_xscale("log")
    ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
    ax.minorticks_off()
    better = "lower" if METRICS[metric].lower_is_better else "higher"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{metric_label(metric)} ({better} is better)")
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)
    save_figure(fig, png, svg=True)
    return True


def nfe_points(runs: list[RunResult], study: Path, metric: str) -> list[Point]:
    """(line, NFE, metric, floor) of every evaluation of every run; a line per training config
    and solver."""
    trained = _line_labels(runs, ("sample",))
    points: list[Point] = []
    for run in runs:
        for e in _evaluations(run, study):
            if metric in e["metrics"]:
                label = ", ".join(p for p in (trained[run.name], e["solver"]) if p)
                points.append((label, float(e["nfe"]), e["metrics"][metric],
                               e["metrics"].get(f"{metric}_floor")))
    return points


def data_size_points(runs: list[RunResult], metric: str) -> list[Point]:
    """(line, dataset.n_train, metric, floor) of every completed run on a subset of the train
    split (runs on all of it have no number to stand at); a line per config but for n_train."""
    sized = [r for r in runs if r.status == "completed"
             and r.config.get("dataset", {}).get("n_train")]
    trained = _line_labels(sized, ("dataset.n_train",))

    def value(run: RunResult) -> float | None:
        return run.best_val_loss if metric == "best_val_loss" else run.metrics.get(metric)

    return [(trained[r.name], float(r.config["dataset"]["n_train"]), value(r),
             r.metrics.get(f"{metric}_floor")) for r in sized if value(r) is not None]


def quality_vs_nfe(runs: list[RunResult], study: Path, png: Path, title: str,
                   metric: str) -> bool:
    """Sample quality against NFE, when some line has two NFE values."""
    metric = metric if metric != "best_val_loss" else "fd"
    return _draw_budget(nfe_points(runs, study, metric), png,
                        f"{title}: quality against sampling steps", "velocity evaluations (NFE)",
                        metric)


def quality_vs_data_size(runs: list[RunResult], study: Path, png: Path, title: str,
                         metric: str) -> bool:
    """Sample quality against ``dataset.n_train``, when some line has two sizes."""
    return _draw_budget(data_size_points(runs, metric), png,
                        f"{title}: quality against training-set size",
                        "training points (dataset.n_train)", metric)


def _line_labels(runs: list[RunResult], ignore: tuple[str, ...]) -> dict[str, str]:
    """run name -> the label of its line: runs equal but for their seed and ``ignore`` share a
    line, labelled by what sets it apart from the other lines (empty when there is one)."""
    keys = {r.name: json.dumps(seedless(r, ignore), sort_keys=True, default=str) for r in runs}
    first: dict[str, RunResult] = {}
    for r in runs:
        first.setdefault(keys[r.name], r)
    labels = dict(zip(first, difference_labels([seedless(r, ignore) for r in first.values()]),
                      strict=True))
    return {name: labels[key] for name, key in keys.items()}


# --- quality against training compute: compute-matched arms (flowstudy.report.compute) ---------


def isoflop(matched: Any, png: Path, title: str) -> bool:
    """Quality against the FLOP budget each run was held to: one line per architecture through
    its best size at each budget (mean, 95% interval over seeds), its other sizes as faint
    points, the floor and the Gaussian baseline as horizontal lines. False without a
    ``ComputeMatched`` of two budgets or more."""
    if matched is None:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    colors = plt.get_cmap("tab10")
    budgets = matched.budgets
    archs = sorted({p.arch for p in matched.points})
    for i, arch in enumerate(archs):
        points = sorted((p for p in matched.points if p.arch == arch), key=lambda p: p.budget)
        color = colors(i % 10)
        dodge = 1.07 ** (i - (len(archs) - 1) / 2)  # side by side at one budget (log x)
        ivs = [ci(list(p.values.values())) for p in points]
        errors = np.array([[iv.mean - iv.low, iv.high - iv.mean] if iv.known else [0.0, 0.0]
                           for iv in ivs]).T
        xs = [p.budget * dodge for p in points]
        ax.errorbar(xs, [iv.mean for iv in ivs], yerr=errors, marker="o", markersize=5,
                    capsize=3, linewidth=1.8, color=color, label=f"{arch} (best size per budget)")
        for p, x in zip(points, xs, strict=True):
            for size, seeds in sorted(p.sizes.items()):
                y = statistics.fmean(seeds.values())
                if size != p.best:
                    ax.plot([x], [y], marker="o", markersize=4, markerfacecolor="none",
                            color=color, alpha=0.7)
                ax.annotate(size.split(" ", 1)[1], (x, y), textcoords="offset points",
                            xytext=(4, 2), fontsize=6, color=color)
    for value, text, style in ((matched.baseline, "Gaussian fit (baseline)", ":"),
                               (matched.floor, "floor (real vs real)", "--")):
        if value is not None:
            ax.axhline(value, linestyle=style, linewidth=1, color="tab:gray", label=text)
    ax.plot([], [], marker="o", markerfacecolor="none", linestyle="none", color="tab:gray",
            label="other sizes (mean over seeds); labels: parameters")
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"{b:.2g}" for b in budgets])
    ax.minorticks_off()
    better = "lower" if matched.direction == "minimize" else "higher"
    ax.set_xlabel("training FLOPs (train.budget.flops; every run within one step of it)")
    ax.set_ylabel(f"{metric_label(matched.metric)} ({better} is better)")
    ax.set_title(f"{title}: quality against training compute", fontsize=11)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(alpha=0.3)
    save_figure(fig, png, svg=True)
    return True
