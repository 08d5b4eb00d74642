"""The report's figures, drawn only from the files runs leave; each is written as PNG and SVG.

- ``metrics``: every ranked metric of every configuration as its mean with the 95% interval
  over seeds (``flowstudy.stats``), each seed a dot, its floor and Gaussian baseline marked.
- ``val_loss``: each configuration's validation curve (the monitored loss), the mean over its
  seeds with a band of the 95% interval of that mean, on a y-range set by the end of training,
  not by the first epoch.
- ``samples``: the real test data first, then one panel per configuration, on shared axes (2-d
  data; other vectors on the test data's top two principal components; digits as images).
- ``nfe``: sample quality (mean and 95% interval over seeds) against the velocity evaluations
  spent, when the group's runs (or
  evaluations beside their checkpoints, ``eval-*.json``) sample with several budgets.
- ``data_size``: sample quality against ``dataset.n_train``, when the group varies it.

A configuration is a (label, runs) pair: the runs of one config that differ only by seed.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowstudy.labels import Configs, difference_labels, differing, flat, seedless, short_labels
from flowstudy.metrics import METRICS
from flowstudy.metrics import label as metric_label
from flowstudy.plots import grid_shape, image_canvas, pca_basis, pyplot, save_figure
from flowstudy.results import RunResult, evaluation_records


def _samples_file(study: Path, run: RunResult) -> Path | None:
    candidates = [study / "checkpoints" / run.name / "samples.npz"]
    if run.checkpoint:
        candidates.append(Path(run.checkpoint).parent / "samples.npz")
    return next((p for p in candidates if p.exists()), None)


def _in_order(configs: Configs) -> list[tuple[tuple[str, list[RunResult]], str]]:
    """Each configuration with its label, ordered by the settings that differ (numbers as
    numbers: steps 2, 4, 16 rather than 16, 2, 4), then by name."""
    flats = [flat(seedless(runs[0])) for _, runs in configs]
    keys = differing(flats)

    def order(i: int) -> list[tuple[int, Any]]:
        values = [flats[i].get(k) for k in keys]
        return [(0, v) if isinstance(v, (int, float)) else (1, str(v)) for v in values] + [
            (1, configs[i][0])]

    labels = short_labels(configs)
    return [(configs[i], labels[i]) for i in sorted(range(len(configs)), key=order)]


def _number(value: float) -> str:
    return f"{value:.3f}" if 1e-3 <= abs(value) < 1 else f"{value:.3g}"


def _ci(values: list[float]) -> Any:
    """The mean of ``values`` and its 95% interval over seeds (flowstudy.stats)."""
    from flowstudy import stats  # imported here: training imports this module, not scipy.stats

    return stats.interval(values)


def _half_widths(values: np.ndarray) -> np.ndarray:
    """Per column of ``values`` (seeds x points), the half-width of the t interval of the mean
    (flowstudy.stats's default interval); zeros for one seed."""
    n = values.shape[0]
    if n < 2:
        return np.zeros(values.shape[1])
    from scipy import stats as sps

    return sps.t.ppf(0.975, n - 1) * values.std(0, ddof=1) / np.sqrt(n)


def _spread(values: list[float]) -> str:
    """``0.120 [0.081, 0.159]``: the mean with its 95% interval over seeds."""
    iv = _ci(values)
    if iv.known:
        return f"{_number(iv.mean)} [{_number(iv.low)}, {_number(iv.high)}]"
    return _number(iv.mean)


# --- every metric with its interval ------------------------------------------------------------


def metric_intervals(summary: Any, png: Path, title: str) -> bool:
    """One panel per ranked metric (``summary``: the report's ``tables.Summary``): for each
    configuration its mean with the 95% interval over seeds, each seed a dot, its floor (real vs
    real) and Gaussian baseline marked; the panel names the winner, or says there is none.
    False when no configuration has two seeds of any metric."""
    from flowstudy.report.tables import STATISTICS

    keys = [k for k in STATISTICS if METRICS[k].direction
            and any(c[k].interval is not None for c in summary.cells)]
    if not keys or not any(c[k].interval is not None and c[k].interval.known
                           for c in summary.cells for k in keys):
        return False
    plt = pyplot()
    rows, columns = grid_shape(len(keys), max_columns=3)
    n = len(summary.labels)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, (0.42 * n + 1.3) * rows),
                             dpi=110, squeeze=False, layout="constrained")
    for ax in axes.flat[len(keys):]:
        ax.axis("off")
    colors = plt.get_cmap("tab10")
    ys = np.arange(n)[::-1]
    for ax, key in zip(axes.flat, keys, strict=False):
        for y, cells, i in zip(ys, summary.cells, range(n), strict=True):
            c = cells[key]
            if c.interval is None:
                continue
            color = colors(i % 10)
            for yard, marker, mcolor in ((c.floor, "|", "tab:gray"), (c.baseline, "x", "tab:red")):
                if yard is not None:  # under the model's marks, which must stay visible
                    ax.plot(yard.mean, y, marker, color=mcolor, markersize=11, mew=1.6,
                            alpha=0.8, zorder=1)
            seeds = list(c.seeds.values())
            iv = c.interval
            if iv.known:
                ax.plot([iv.low, iv.high], [y, y], color=color, linewidth=2.2, zorder=2)
            ax.plot(seeds, [y] * len(seeds), "o", color="k", alpha=0.45, markersize=3, zorder=3)
            ax.plot(iv.mean, y, "D", color=color, markersize=5.5, mec="k", mew=0.6, zorder=4)
        verdict = summary.verdicts.get(key)
        said = ("no comparison" if verdict is None or verdict.runner_up is None else
                f"winner: {verdict.winner}" if verdict.winner else "no clear winner")
        better = "lower" if METRICS[key].lower_is_better else "higher"
        ax.set_title(f"{metric_label(key)} ({better} is better)\n{said}", fontsize=9.5)
        ax.set_yticks(ys, summary.labels, fontsize=8.5)
        ax.set_ylim(-0.7, n - 0.3)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    handles = [plt.Line2D([], [], color="k", marker="D", linewidth=2.2, markersize=5,
                          label="mean, 95% interval over seeds"),
               plt.Line2D([], [], color="k", marker="o", alpha=0.45, linestyle="",
                          markersize=3, label="one seed"),
               plt.Line2D([], [], color="tab:gray", marker="|", linestyle="", markersize=11,
                          mew=1.6, label="floor (real vs real)"),
               plt.Line2D([], [], color="tab:red", marker="x", linestyle="", markersize=9,
                          mew=1.6, label="gauss (Gaussian fit)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=9, frameon=False)
    fig.suptitle(f"{title}: every metric over seeds", fontsize=12)
    save_figure(fig, png, svg=True)
    return True


# --- validation curves ---------------------------------------------------------------------------


def _val_curve(study: Path, run: RunResult) -> dict[int, float]:
    """step -> the validation loss the run monitored (EMA weights unless train.monitor=raw)."""
    path = study / "runs" / run.name / "metrics.jsonl"
    if not path.exists():
        return {}
    raw = run.config.get("train", {}).get("monitor") == "raw"
    key = "val/raw_loss" if raw else "val/ema_loss"
    points = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {p["step"]: p[key] for p in points if key in p and np.isfinite(p[key])}


def y_range(lows: list[float], highs: list[float]) -> tuple[float, float]:
    """From the lowest point of any band to the 95th percentile of the curves' later values,
    with a margin: the end of training fills the plot, the first epochs run off its top."""
    low, high = min(lows), float(np.percentile(highs, 95))
    margin = 0.06 * (high - low) if high > low else 0.05 * abs(high) + 1e-6
    return low - margin, high + margin


def validation_curves(configs: Configs, study: Path, png: Path, title: str) -> bool:
    """Mean over seeds per configuration with the 95% interval of that mean as a band; seeds
    that trained longer than the others (early
    stopping) continue as thin dashed lines. False when no run has a curve."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 5.2), dpi=120)
    colors = plt.get_cmap("tab10")
    lows: list[float] = []
    highs: list[float] = []  # the last 80% of each curve, and where each ends
    drawn = 0
    for i, ((_, runs), label) in enumerate(_in_order(configs)):
        curves = [c for c in (_val_curve(study, r) for r in runs) if c]
        if not curves:
            continue
        drawn += 1
        color = colors(i % 10)
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        values = np.array([[c[s] for s in steps] for c in curves])
        mean = values.mean(0)
        std = _half_widths(values)  # the band: the 95% interval of the mean at each step
        seeds = f" ({len(curves)} seeds)" if len(curves) > 1 else ""
        ax.plot(steps, mean, color=color, linewidth=1.6, label=f"{label}{seeds}")
        if len(curves) > 1:
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        best = int(mean.argmin())
        ax.plot(steps[best], mean[best], "o", color=color, markersize=4)
        late = len(steps) // 5
        lows.extend(mean - std)
        highs.extend((mean + std)[late:])
        for c in curves:
            tail = [s for s in sorted(c) if s > steps[-1]]
            if tail:
                ax.plot(tail, [c[s] for s in tail], color=color, linewidth=0.8, linestyle="--")
                lows.extend(c[s] for s in tail)
                highs.extend(c[s] for s in tail)
    if not drawn:
        pyplot().close(fig)
        return False
    ax.set_ylim(*y_range(lows, highs))
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (monitored weights)")
    ax.set_title(f"{title}: mean over seeds, band: its 95% interval; dot: best", fontsize=11)
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(alpha=0.3)
    save_figure(fig, png, svg=True)
    return True


# --- sample montage ------------------------------------------------------------------------------


def _metric_text(runs: list[RunResult], metric: str) -> str:
    values = [r.metrics[metric] for r in runs if metric in r.metrics]
    return f"{metric_label(metric)} {_spread(values)}" if values else ""


def sample_montage(configs: Configs, study: Path, png: Path, title: str, metric: str) -> bool:
    """Real test data, then each configuration's samples (its lowest seed's), on the same axes
    per dataset. False when no run left its samples."""
    metric = metric if metric != "best_val_loss" else "fd"
    panels: list[dict[str, Any]] = []
    for (_, runs), label in _in_order(configs):
        run = min(runs, key=lambda r: r.config.get("seed", 0))
        path = _samples_file(study, run)
        if path is None:
            continue
        arrays = np.load(path)
        panels.append({"title": f"{label}\n{_metric_text(runs, metric)}",
                       "points": arrays["samples"], "reference": arrays["reference"],
                       "dataset": _test_data_key(run), "seeds": len(runs),
                       "floors": [r.metrics[f"{metric}_floor"] for r in runs
                                  if f"{metric}_floor" in r.metrics]})
    if not panels:
        return False
    cells: list[dict[str, Any]] = []
    for dataset in dict.fromkeys(p["dataset"] for p in panels):
        own = [p for p in panels if p["dataset"] == dataset]
        floors = [f for p in own for f in p["floors"]]
        floor_text = (f"\n{metric_label(metric)} floor "
                      f"{_number(statistics.fmean(floors))}" if floors else "")
        cells.append({"title": f"test data{floor_text}", "points": own[0]["reference"],
                      "reference": own[0]["reference"], "real": True,
                      "dataset": dataset})
        cells.extend(own)
    for cell in cells:
        cell["points"], cell["reference"], cell["axes"] = _plane(cell)
    plt = pyplot()
    rows, columns = grid_shape(len(cells))
    low, high = _limits(cells[0]["reference"])
    aspect = 1.0 if cells[0]["axes"] == "image" else min(1.5, max(0.4, (high - low)[1] /
                                                                   (high - low)[0]))
    fig, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, (2.8 * aspect + 0.8) * rows
                                                     + 0.4), dpi=110, squeeze=False,
                             layout="constrained")
    fig.get_layout_engine().set(w_pad=0.1, wspace=0.05)
    for ax in axes.flat[len(cells):]:
        ax.axis("off")
    for ax, cell in zip(axes.flat, cells, strict=False):
        _draw_panel(ax, cell)
    seeds = "; the first seed of each" if any(p["seeds"] > 1 for p in panels) else ""
    where = "beside the test data" if cells[0]["axes"] == "image" else "over the test data (gray)"
    fig.suptitle(f"{title}: samples of each configuration {where}{seeds}", fontsize=12)
    save_figure(fig, png, svg=True)
    return True


def _plane(cell: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, str]:
    """(points, reference, axes) to draw: 2-d data as it is, digits as images, other vectors on
    the test data's top two principal components (the same plane for every panel)."""
    points, reference = cell["points"], cell["reference"]
    if (json.loads(cell["dataset"]) or {}).get("name") == "digits":
        return points, reference, "image"
    if reference.shape[1] == 2:
        return points, reference, "data"
    mean, basis = pca_basis(torch.from_numpy(reference).double())
    project = lambda x: ((torch.from_numpy(x).double() - mean) @ basis).numpy()  # noqa: E731
    return project(points), project(reference), "PC"


def _limits(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low, high = reference.min(0), reference.max(0)
    pad = 0.08 * (high - low)
    return low - pad, high + pad


def _test_data_key(run: RunResult) -> str:
    """Runs with equal keys were measured on the same test points (n_train picks training
    points only)."""
    dataset = {k: v for k, v in run.config.get("dataset", {}).items() if k != "n_train"}
    return json.dumps(dataset, sort_keys=True)


def _draw_panel(ax: Any, cell: dict[str, Any]) -> None:
    points, reference = cell["points"], cell["reference"]
    ax.set_title(cell["title"], fontsize=10)
    if cell["axes"] == "image":
        ax.imshow(image_canvas(torch.from_numpy(points), rows=6).numpy(), cmap="gray_r",
                  vmin=0, vmax=16)
        ax.set_xticks([])
        ax.set_yticks([])  # the frame alone, so neighbouring panels stay apart
        return
    size = float(np.clip(3000 / len(points), 1.5, 10))
    if not cell.get("real"):
        ax.scatter(reference[:, 0], reference[:, 1], s=size, alpha=0.25, color="tab:gray",
                   rasterized=True, linewidths=0)
    ax.scatter(points[:, 0], points[:, 1], s=size, alpha=0.6,
               color="tab:gray" if cell.get("real") else "tab:blue", rasterized=True,
               linewidths=0)
    low, high = _limits(reference)
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_aspect("equal", adjustable="box")
    ax.tick_params(labelsize=8)
    if cell["axes"] == "PC":
        ax.set_xlabel("PC 1", fontsize=9)
        ax.set_ylabel("PC 2", fontsize=9)


# --- quality against a budget: NFE, training-set size ---------------------------------------------


def _evaluations(run: RunResult) -> list[dict[str, Any]]:
    """The run's own end-of-run evaluation and every ``python -m flowstudy.sample`` record beside
    its checkpoint: (solver, nfe, metrics) each."""
    solver = run.config.get("sample", {}).get("solver", "?")
    found = [{"solver": solver, "nfe": run.nfe, "metrics": run.metrics}] if run.nfe else []
    found += [{"solver": e["sample"]["solver"], "nfe": e["nfe"], "metrics": e["metrics"]}
              for e in evaluation_records(run.checkpoint)]
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
        ivs = [_ci([v for v, _ in by_x[x]]) for x in xs]
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
        for e in _evaluations(run):
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
        ivs = [_ci(list(p.values.values())) for p in points]
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
