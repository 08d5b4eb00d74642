"""Compute-matched arms (``train.budget.flops``; flowstudy.budget): quality against the FLOPs
each run was held to, one line per architecture, and the best architecture at each budget.

An architecture may run at several sizes under one budget (``ablation=architectures-isoflop``:
two widths). At each budget an architecture is represented by its best size there (the best mean
over seeds: the compute-optimal size among those tried, the IsoFLOP reading), and the
architectures are compared with ``flowstudy.stats.verdict``: a winner only when the interval of
its difference to the runner-up excludes 0, else "no clear winner". Picking each
architecture's best size by its mean first favours the architecture tried at more sizes a
little (the best of several noisy means is optimistic); with two sizes each, all alike.

Torch-free: tables and JSON read it; ``flowstudy.figures.isoflop`` draws it.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from flowstudy import stats
from flowstudy.metrics import METRICS
from flowstudy.metrics import label as metric_label
from flowstudy.results import RunResult

Seeds = dict[int, float]


def _value(run: RunResult, metric: str) -> float | None:
    return run.best_val_loss if metric == "best_val_loss" else run.metrics.get(metric)


def size_label(run: RunResult) -> str:
    """``mlp 59.5k``: the architecture and its parameter count."""
    return f"{run.config['arch']['name']} {(run.params or 0) / 1e3:.3g}k"


@dataclass
class BudgetPoint:
    """One architecture at one budget: each size's values over seeds, and the best size."""

    budget: float
    arch: str
    sizes: dict[str, Seeds]  # size label -> {seed: metric}
    best: str  # the size label with the best mean

    @property
    def values(self) -> Seeds:
        return self.sizes[self.best]


@dataclass
class ComputeMatched:
    metric: str
    direction: str
    points: list[BudgetPoint]
    verdicts: dict[float, stats.Verdict]  # budget -> best architecture there
    floor: float | None  # the metric between two real sets (mean over runs)
    baseline: float | None  # for a Gaussian fitted to train (mean over runs)

    @property
    def budgets(self) -> list[float]:
        return sorted({p.budget for p in self.points})

    def markdown(self) -> str:
        better = "lower" if self.direction == "minimize" else "higher"
        refs = ", ".join(f"{name} {value:.4g}" for name, value in (
            ("floor", self.floor), ("gauss", self.baseline)) if value is not None)
        lines = [f"## Compute-matched arms by {metric_label(self.metric)} ({better} is better)",
                 "",
                 "Every run stopped within one step of its FLOP budget (train.budget.flops); "
                 "each architecture at its best size per budget, mean [95% interval over "
                 f"seeds]{f'; {refs}' if refs else ''}.", "",
                 "| budget (FLOPs) | " + " | ".join(sorted({p.arch for p in self.points}))
                 + " | verdict |", "|---" * (len({p.arch for p in self.points}) + 2) + "|"]
        by = {(p.budget, p.arch): p for p in self.points}
        for b in self.budgets:
            cells = []
            for arch in sorted({p.arch for p in self.points}):
                p = by.get((b, arch))
                if p is None:
                    cells.append("-")
                    continue
                iv = stats.interval(list(p.values.values()))
                interval = f" [{iv.low:.4g}, {iv.high:.4g}]" if iv.known else ""
                size = p.best.split(" ", 1)[1]
                cells.append(f"{iv.mean:.4g}{interval} ({size}, {len(p.values)} seeds)")
            v = self.verdicts[b]
            verdict = f"**{v.winner}**" if v.winner else "no clear winner"
            lines.append(f"| {b:.3g} | " + " | ".join(cells) + f" | {verdict} |")
        lines += ["", *(f"- {b:.3g} FLOPs: {self.verdicts[b].text}" for b in self.budgets)]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "direction": self.direction, "floor": self.floor,
                "baseline": self.baseline,
                "points": [{"budget": p.budget, "arch": p.arch, "best_size": p.best,
                            "sizes": {k: {str(s): v for s, v in seeds.items()}
                                      for k, seeds in p.sizes.items()}} for p in self.points],
                "verdicts": {f"{b:g}": v.to_dict() for b, v in self.verdicts.items()}}


def compute_matched(runs: list[RunResult], metric: str,
                    method: stats.Method = "t") -> ComputeMatched | None:
    """The group's FLOP-budget runs by budget and architecture, or None unless they span at
    least two budgets."""
    budgeted = [r for r in runs if r.status == "completed" and r.budget
                and r.budget.get("kind") == "flops" and _value(r, metric) is not None]
    if len({r.budget["value"] for r in budgeted}) < 2:
        return None
    direction = METRICS[metric].direction or "minimize"
    cells: dict[tuple[float, str], dict[str, Seeds]] = defaultdict(lambda: defaultdict(dict))
    for r in budgeted:
        cells[(r.budget["value"], r.config["arch"]["name"])][size_label(r)][r.config["seed"]] = \
            _value(r, metric)
    sign = 1 if direction == "minimize" else -1
    points = [BudgetPoint(b, arch, dict(sizes), min(
        sizes, key=lambda s: sign * statistics.fmean(sizes[s].values())))
        for (b, arch), sizes in sorted(cells.items())]
    verdicts = {}
    for b in sorted({p.budget for p in points}):
        arms = {p.best: p.values for p in points if p.budget == b}
        verdicts[b] = stats.verdict(arms, metric, direction, metric_label(metric), method)

    def mean_of(key: str) -> float | None:
        found = [r.metrics[key] for r in budgeted if key in r.metrics]
        return statistics.fmean(found) if found else None

    return ComputeMatched(metric, direction, points, verdicts, mean_of(f"{metric}_floor"),
                          mean_of(f"{metric}_baseline"))
