"""Checkpoint selection by a sample metric (``train.monitor=val_mmd|val_c2st|val_norm_w1``).

The velocity MSE on validation can keep improving while the samples collapse inward (issue 18:
on 1,349 unit-norm embeddings its best was at step 1,650, with norms 0.94). A sample monitor
instead measures what the run is for, the samples, on the validation split:

- **one fixed draw**: ``min(train.monitor_n, n_val)`` source points from a generator seeded by
  the data seed, drawn once at build, so measurements differ only by the weights and every run
  of a study is judged on the same noise;
- carried through the ODE with the **EMA weights** (those the end of run samples with), by
  ``sample.solver`` (its ``atol``/``rtol``) in ``train.monitor_steps`` steps: 20 by default
  where the end of run takes ``sample.steps`` (100). Checkpoints are ranked against each other,
  so the few-step bias, shared by every checkpoint, matters less than the cost of each
  measurement; null takes ``sample.steps``;
- **against the first as many val rows** in data space (the samples denormalised), never the
  test split, which stays untouched until the end-of-run evaluation;
- by the registry's metric (``flowstudy.metrics``): ``mmd2_unbiased``, the ``c2st`` accuracy
  (folds and classifiers seeded by the data seed) or ``norm_w1``, all lower-is-better.

Non-finite samples measure NaN, which is never a best.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from flowstudy.config import Config
from flowstudy.config.rules import MIN_MONITOR_POINTS
from flowstudy.data import DataSplits
from flowstudy.data.normalize import Normalizer
from flowstudy.early_stopping import EarlyStopping
from flowstudy.errors import ConfigError
from flowstudy.flows.solvers import solve
from flowstudy.metrics import MONITORS
from flowstudy.metrics.c2st import c2st
from flowstudy.metrics.distances import mmd2_unbiased
from flowstudy.metrics.norms import norm_metrics
from flowstudy.metrics.sets import C2ST_FOLDS

# metric -> (samples, val rows, data seed) -> value, for every metric a monitor may name
MEASURES: dict[str, Callable[[torch.Tensor, torch.Tensor, int], float]] = {
    "mmd": lambda x, y, seed: mmd2_unbiased(x, y),
    "c2st": lambda x, y, seed: c2st(x, y, seed, C2ST_FOLDS).accuracy,
    "norm_w1": lambda x, y, seed: norm_metrics(x, y)["norm_w1"],
}


@dataclass
class Measurement:
    value: float
    seconds: float  # wall time of sampling and measuring


@dataclass
class SampleMonitor:
    metric: str  # a key of MEASURES
    x0: torch.Tensor  # the fixed source draw, on the model's device
    reference: torch.Tensor  # as many val rows, data space, on the CPU
    normalizer: Normalizer
    solver: str
    steps: int
    atol: float
    rtol: float
    seed: int  # the data seed

    @classmethod
    def build(cls, cfg: Config, data: DataSplits, device: torch.device) -> SampleMonitor | None:
        """The monitor ``cfg.train.monitor`` names (None for a val loss), or one line saying
        the val split is too small for it."""
        t = cfg.train
        metric = MONITORS[t.monitor].metric
        if metric is None:
            return None
        n = min(t.monitor_n, data.val.shape[0])
        if n < MIN_MONITOR_POINTS:
            raise ConfigError("dataset.n_val", data.val.shape[0],
                              f"at least {MIN_MONITOR_POINTS} val rows for train.monitor="
                              f"{t.monitor} (its C2ST's 5 folds need 2 points a class), or "
                              f"train.monitor=ema")
        x0 = data.source.sample(n, data.dim, torch.Generator().manual_seed(cfg.dataset.seed))
        s = cfg.sample
        return cls(metric, x0.to(device), data.val[:n].cpu(), data.normalizer, s.solver,
                   t.monitor_steps if t.monitor_steps is not None else s.steps, s.atol, s.rtol,
                   cfg.dataset.seed)

    @torch.no_grad()
    def measure(self, model: nn.Module) -> Measurement:
        """The metric of ``model``'s samples from the fixed draw against the val rows."""
        started = time.perf_counter()
        was_training = model.training
        z, _ = solve(model.eval(), self.x0, self.solver, self.steps, self.atol, self.rtol)
        model.train(was_training)
        samples = self.normalizer.decode(z).cpu()
        value = (MEASURES[self.metric](samples, self.reference, self.seed)
                 if torch.isfinite(samples).all() else math.nan)
        return Measurement(value, time.perf_counter() - started)

    def describe(self, every: int) -> str:
        """For the log at start: what is measured, on what, how often."""
        steps = "adaptive" if self.solver == "dopri5" else f"{self.steps}"
        return (f"monitor {self.metric} of EMA samples: {len(self.x0)} fixed source points, "
                f"{self.solver} ({steps} steps), against {len(self.reference)} val rows, every "
                f"{every} epoch(s)")

    def record(self, stopper: EarlyStopping, seconds: list[float]) -> dict[str, Any]:
        """What result.json keeps: the best by the monitor, what it measured on, and its cost
        (``seconds``: each measurement of this training segment)."""
        return {"name": f"val_{self.metric}", "metric": self.metric, "best": stopper.best,
                "best_epoch": stopper.best_epoch, "points": len(self.x0), "solver": self.solver,
                "steps": self.steps, "measurements": len(seconds),
                "seconds_per_measurement": sum(seconds) / len(seconds) if seconds else None}
