"""A study group's runs on disk, folded into rows: one per configuration, its seeds together."""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from flowstudy.config import identity
from flowstudy.errors import UserError
from flowstudy.results import RunResult, skip_warning


@dataclass
class Row:
    """One configuration: a run, or the runs of several seeds."""

    name: str
    runs: list[RunResult] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        out = []
        for r in self.runs:
            v = r.metrics.get(key) if key in r.metrics else getattr(r, key, None)
            if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
                out.append(float(v))
        return out

    def by_seed(self, key: str) -> dict[int, float]:
        """seed -> the run's finite value of ``key``; runs of one config that share a seed (the
        same settings under two names) are one seed, their mean, not two."""
        seen: dict[int, list[float]] = {}
        for i, r in enumerate(self.runs):
            v = r.metrics.get(key) if key in r.metrics else getattr(r, key, None)
            if isinstance(v, (int, float)) and math.isfinite(v):
                seed = r.config.get("seed")
                seen.setdefault(seed if isinstance(seed, int) else -1 - i, []).append(float(v))
        return {s: statistics.fmean(v) for s, v in seen.items()}

    @property
    def seeds(self) -> list[int]:
        return sorted({r.config["seed"] for r in self.runs if isinstance(r.config.get("seed"),
                                                                          int)})

    @property
    def completed(self) -> bool:
        return all(r.status == "completed" for r in self.runs)

    def mean(self, key: str) -> float | None:
        v = self.values(key)
        return statistics.fmean(v) if v else None

    def std(self, key: str) -> float | None:
        v = self.values(key)
        return statistics.stdev(v) if len(v) > 1 else None


def load_runs(study: Path) -> list[RunResult]:
    """Every readable result; a damaged one is skipped with a warning, not the whole report."""
    runs = []
    for path in sorted((study / "runs").glob("*/result.json")):
        try:
            runs.append(RunResult.load(path))
        except UserError as e:
            skip_warning(str(e))
    return runs


def _seedless(run: RunResult) -> str:
    """A run's identity less its seed: its config, and the checkpoints its lineage started from
    (a branch is never a seed of a fresh run with the same settings)."""
    config = {k: v for k, v in identity(run.config).items() if k != "seed"}
    parents = [s["parent"] for s in run.lineage if s.get("parent")]
    return json.dumps([config, parents], sort_keys=True)


def rows_for(runs: list[RunResult]) -> list[Row]:
    """Fold runs whose configs differ only by seed into one row."""
    rows: dict[str, Row] = {}
    for r in runs:
        key = _seedless(r)
        if key not in rows:
            rows[key] = Row(name=re.sub(r"-seed-?\d+", "", r.name))
        rows[key].runs.append(r)
    for row in rows.values():
        if len(row.runs) == 1:
            row.name = row.runs[0].name
    return list(rows.values())


def default_metric(runs: list[RunResult]) -> str:
    """W2 for 2-d data, Frechet distance otherwise; val loss when no run has sample metrics."""
    if not any(r.metrics for r in runs):
        return "best_val_loss"
    return "w2" if all(r.dim == 2 for r in runs if r.dim) else "fd"


def study_groups(study: Path) -> list[str]:
    return sorted({g for r in load_runs(study) for g in (r.groups or [r.group])})
