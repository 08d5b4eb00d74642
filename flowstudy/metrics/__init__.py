"""The metric registry: every number a run reports about its samples or its training, with the
direction that is better, the yardsticks it is reported with, and whether a sweep may optimise
it. Report, sweep, CLI, objective validation, W&B summaries and completion all read this table,
so a metric is added in one place. Torch-free: validation and ``--help`` import it.

The functions live beside it, one module per kind: ``distances`` (w2, fd, mmd), ``neighbours``
(precision/recall, density/coverage, memorisation), ``c2st``, ``norms``, ``gaussian`` (the
baseline's fit), ``sets`` (``sample_metrics``: every set metric with its floor and baseline) and
``collapse`` (torch-free: the collapse / over-spread rule, read from a run's metrics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class Metric:
    name: str  # key in result.json's metrics (or a RunResult field: best_val_loss)
    label: str  # how tables and figures name it
    # Which way is better; None: context only, shown but never ranked or optimised.
    direction: Direction | None
    floor: bool = True  # reported with <name>_floor (the same metric for real vs real data)
    baseline: bool = True  # reported with <name>_baseline (for a Gaussian fitted to train)
    # Computed by flowstudy.metrics.sets.sample_metrics (one sample set against the test split).
    sample_set: bool = True
    # Whether objective= (and a hyperparameter search) may optimise it: not a metric that a
    # model scores perfectly by ignoring the data (memorised: 0 for pure noise).
    objective: bool = True

    @property
    def lower_is_better(self) -> bool:
        return self.direction == "minimize"


_ALL = (
    Metric("best_val_loss", "best val loss", "minimize", floor=False, baseline=False,
           sample_set=False),
    Metric("w2", "W2", "minimize"),
    Metric("mmd", "MMD²", "minimize"),
    Metric("fd", "FD", "minimize"),
    Metric("precision", "precision", "maximize"),
    Metric("recall", "recall", "maximize"),
    Metric("density", "density", "maximize"),
    Metric("coverage", "coverage", "maximize"),
    # Cross-validated accuracy of the better of two classifiers telling samples from test points:
    # 0.5 = indistinguishable. Below 0.5 is noise, so closer to 0.5 is lower: minimised.
    Metric("c2st", "C2ST", "minimize"),
    # 1-d W1 between the norms of the samples and of the test points (collapse, over-spread).
    Metric("norm_w1", "norm W1", "minimize"),
    Metric("test_nll", "test NLL", "minimize", floor=False, sample_set=False),
    Metric("memorized", "memorised", "minimize", objective=False),
    # Small means copies of training points, large means off the data: context for memorised.
    Metric("nn_dist", "NN distance", None),
    # Context for c2st: its fold spread, and each classifier's accuracy (c2st is the larger).
    Metric("c2st_std", "C2ST fold std", None),
    Metric("c2st_lr", "C2ST (logistic)", None),
    Metric("c2st_mlp", "C2ST (MLP)", None),
    # Context for norm_w1: the samples' own norms (the floor's: real points').
    Metric("norm_mean", "mean norm", None),
    Metric("norm_std", "norm std", None),
)
METRICS: dict[str, Metric] = {m.name: m for m in _ALL}

# Metrics of one sample set against the test split, in the order sample_metrics returns them.
SET_METRICS: tuple[str, ...] = tuple(m.name for m in _ALL if m.sample_set)
# Sample-quality columns of a report: every metric of the samples, the likelihood included.
QUALITY: tuple[str, ...] = tuple(m.name for m in _ALL if m.name != "best_val_loss")
# sample.project_norm: each metric of SET_METRICS again, named <metric>_proj, for the samples
# rescaled to the train split's mean norm (flowstudy.metrics.norms.project_norm), beside the raw
# ones; the floor and the baseline are those of the raw metric.
PROJECTED = "_proj"
# What objective= accepts, and which way a search optimises it.
OBJECTIVES: dict[str, Direction] = {m.name: m.direction for m in _ALL
                                    if m.direction and m.objective}
# The headline metrics a sweep's summary line shows per job.
HEADLINE: tuple[str, ...] = ("w2", "fd")


@dataclass(frozen=True)
class Monitor:
    """A value ``train.monitor`` may name: what picks ``best.pt`` and drives early stopping."""

    name: str
    # The set metric measured on EMA samples against the validation split (flowstudy.monitor);
    # None: a validation loss, of the EMA (``ema``) or the raw (``raw``) weights.
    metric: str | None = None

    @property
    def log_key(self) -> str:
        """Its key in metrics.jsonl and W&B."""
        return f"val/{self.metric}" if self.metric else f"val/{self.name}_loss"

    @property
    def measures(self) -> str:
        """What its values are a measure of: a checkpoint's best carries over into a branch
        only when the branch monitors the same thing (a val loss is not an MMD)."""
        return self.metric or "val loss"


# Early stopping keeps the lowest value, so only metrics the registry minimises are monitors;
# c2st is the classifier's accuracy, minimised towards 0.5 (below it is noise).
MONITORS: dict[str, Monitor] = {m.name: m for m in (
    Monitor("ema"), Monitor("raw"),
    *(Monitor(f"val_{name}", name) for name in ("mmd", "c2st", "norm_w1")))}
# What a sample monitor logs each time it measures, besides the metric: its cost in seconds.
MONITOR_SECONDS = "val/monitor_s"
# Validation values logged every epoch (the val losses) or measurement (a sample monitor's
# metric): W&B summarises them by their minimum.
VALIDATION_VALUES: tuple[str, ...] = tuple(m.log_key for m in MONITORS.values())


def label(name: str) -> str:
    """How tables and figures name ``name`` (itself where it is not a registered metric)."""
    raw = name.removesuffix(PROJECTED)
    if raw != name and raw in METRICS:
        return f"{METRICS[raw].label} (projected)"
    return METRICS[name].label if name in METRICS else name
