"""End-of-run evaluation: sample with the best EMA weights, measure, and draw the samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from flowstudy.config import SampleConfig
from flowstudy.data import DataSplits
from flowstudy.flows.solvers import solve
from flowstudy.metrics import sample_metrics
from flowstudy.plots import image_grid, pca_scatter, scatter


@dataclass
class Evaluation:
    samples: torch.Tensor  # data space, on the CPU
    metrics: dict[str, float]  # sample_metrics on min(sample.n, n_test, n_train) points each
    nfe: int  # velocity evaluations of the solver


@torch.no_grad()
def evaluate(model: nn.Module, data: DataSplits, cfg: SampleConfig, seed: int) -> Evaluation:
    device = next(model.parameters()).device
    x0 = data.source.sample(cfg.n, data.dim, torch.Generator().manual_seed(seed))
    z, nfe = solve(model.eval(), x0.to(device), cfg.solver, cfg.steps, cfg.atol, cfg.rtol)
    samples = data.normalizer.decode(z).cpu()
    # Equal-sized sets make W2 exact; the floor's real reference comes from the train split.
    n = min(cfg.n, data.test.shape[0], data.train.shape[0])
    pick = torch.randperm(data.train.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    metrics = sample_metrics(samples[:n], data.test[:n], data.train[pick])
    return Evaluation(samples=samples, metrics=metrics, nfe=nfe)


def plot_samples(evaluation: Evaluation, data: DataSplits, png: Path, title: str) -> None:
    m = evaluation.metrics
    if data.name.startswith("digits"):
        image_grid(evaluation.samples, png,
                   f"{title}   FD={m['fd']:.2f} (floor {m['fd_floor']:.2f})", reference=data.test)
    elif data.dim == 2:
        scatter(evaluation.samples, data.test, png,
                f"{title}   W2={m['w2']:.4f} (floor {m['w2_floor']:.4f})")
    else:
        pca_scatter(evaluation.samples, data.test, png,
                    f"{title}   FD={m['fd']:.3f} (floor {m['fd_floor']:.3f})")
