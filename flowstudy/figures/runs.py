"""Figures of a group's configurations: metric intervals, validation curves, sample montage."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowstudy.figures.common import half_widths, in_order, number, samples_file, spread, y_range
from flowstudy.labels import Configs
from flowstudy.metrics import METRICS
from flowstudy.metrics import label as metric_label
from flowstudy.plots import grid_shape, image_canvas, pca_basis, pyplot, save_figure
from flowstudy.results import RunResult, skip_warning


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
    curve, bad = {}, []
    for line_no, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        try:
            point = json.loads(line) if line.strip() else {}
            value = point.get(key) if isinstance(point, dict) else None
            if value is not None and np.isfinite(value):
                curve[int(point["step"])] = float(value)
        except (ValueError, TypeError, KeyError):  # a line cut short by a killed run, or junk
            bad.append(line_no)
    if bad:
        skip_warning(f"{len(bad)} unreadable line(s) of {path} (first: line {bad[0]}); the "
                     f"validation curve uses the rest")
    return curve


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
    for i, ((_, runs), label) in enumerate(in_order(configs)):
        curves = [c for c in (_val_curve(study, r) for r in runs) if c]
        if not curves:
            continue
        drawn += 1
        color = colors(i % 10)
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        values = np.array([[c[s] for s in steps] for c in curves])
        mean = values.mean(0)
        std = half_widths(values)  # the band: the 95% interval of the mean at each step
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
    return f"{metric_label(metric)} {spread(values)}" if values else ""


def sample_montage(configs: Configs, study: Path, png: Path, title: str, metric: str) -> bool:
    """Real test data, then each configuration's samples (its lowest seed's), on the same axes
    per dataset. False when no run left its samples."""
    metric = metric if metric != "best_val_loss" else "fd"
    panels: list[dict[str, Any]] = []
    for (_, runs), label in in_order(configs):
        run = min(runs, key=lambda r: r.config.get("seed", 0))
        path = samples_file(study, run)
        if path is None:
            continue
        try:
            with np.load(path) as arrays:
                points, reference = arrays["samples"], arrays["reference"]
        except Exception as e:  # np.load of a damaged file raises many kinds
            skip_warning(f"{path}: not a readable samples file ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else 'damaged'}); the montage "
                         f"leaves it out")
            continue
        panels.append({"title": f"{label}\n{_metric_text(runs, metric)}",
                       "points": points, "reference": reference,
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
                      f"{number(statistics.fmean(floors))}" if floors else "")
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
    """(points, reference, axes) to draw: 2-d data as it is, digits as images, 1-d data as a
    jittered strip, other vectors on the test data's top two principal components (the same
    plane for every panel)."""
    points, reference = cell["points"], cell["reference"]
    if (json.loads(cell["dataset"]) or {}).get("name") == "digits":
        return points, reference, "image"
    if reference.shape[1] == 2:
        return points, reference, "data"
    if reference.shape[1] == 1:  # a strip: the value against a fixed jitter, density by eye
        span = float(np.ptp(reference)) or 1.0

        def lift(x: np.ndarray) -> np.ndarray:
            jitter = np.random.default_rng(0).uniform(0, 0.3 * span, len(x))
            return np.c_[x[:, 0], jitter]
        return lift(points), lift(reference), "strip"
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
    if cell["axes"] == "strip":
        ax.set_yticks([])  # the jitter carries no value
        ax.set_xlabel("x", fontsize=9)
    if cell["axes"] == "PC":
        ax.set_xlabel("PC 1", fontsize=9)
        ax.set_ylabel("PC 2", fontsize=9)


# --- quality against a budget: NFE, training-set size ---------------------------------------------


