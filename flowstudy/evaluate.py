"""End-of-run evaluation: sample with the best EMA weights, measure, and draw the samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from flowstudy.config import SampleConfig
from flowstudy.data import DataSplits
from flowstudy.flows.solvers import SOLVERS
from flowstudy.metrics import wasserstein2
from flowstudy.plots import scatter


@dataclass
class Evaluation:
    w2: float  # exact W2 to the test split, on min(sample.n, n_test) points of each
    samples: torch.Tensor  # data space


@torch.no_grad()
def evaluate(model: nn.Module, data: DataSplits, cfg: SampleConfig, seed: int) -> Evaluation:
    device = next(model.parameters()).device
    x0 = torch.randn(cfg.n, data.dim, generator=torch.Generator().manual_seed(seed))
    z = SOLVERS[cfg.solver](model.eval(), x0.to(device), cfg.steps)
    samples = data.normalizer.decode(z).cpu()
    n = min(cfg.n, data.test.shape[0])
    return Evaluation(w2=wasserstein2(samples[:n], data.test[:n]), samples=samples)


def plot_samples(evaluation: Evaluation, data: DataSplits, png: Path, title: str) -> None:
    scatter(evaluation.samples, data.test, png, title=f"{title}   W2={evaluation.w2:.4f}")
