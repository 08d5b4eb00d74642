"""End-of-run evaluation: sample with the best EMA weights, measure, and draw the samples.

The model's samples come from the run seed; everything it is measured against (the floor's real
reference set, the Gaussian baseline's samples, the likelihood's Hutchinson probes) comes from
the data seed, so every run of a study meets the same yardsticks.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from flowstudy.checkpoint import Checkpoint
from flowstudy.config import Config, SampleConfig
from flowstudy.data import DataSplits
from flowstudy.fileio import atomic_path
from flowstudy.flows.likelihood import choose_divergence, nll_per_dim
from flowstudy.flows.solvers import solve
from flowstudy.metrics import PROJECTED
from flowstudy.metrics.gaussian import GaussianFit
from flowstudy.metrics.norms import project_norm
from flowstudy.metrics.sets import sample_metrics, set_scores
from flowstudy.plots import histogram, image_grid, pca_scatter, scatter
from flowstudy.results import COST_KEYS, RunResult
from flowstudy.tracking import Tracker

log = logging.getLogger("flowstudy")

# The Gaussian baseline is fitted to at most this many train rows (a seeded subset): its moments
# are then pinned far beyond what 1,000 samples can tell apart, and a 1024-d fit takes ~2 s of
# one CPU thread instead of 8 s per 10^5 rows.
GAUSSIAN_FIT_ROWS = 20_000


@dataclass
class Evaluation:
    samples: torch.Tensor  # data space, on the CPU
    # sample_metrics on min(sample.n, n_test, n_train) points each, and test_nll(_baseline)
    metrics: dict[str, float]
    nfe: int  # velocity evaluations of the solver


def likelihood_metrics(model: nn.Module, data: DataSplits, gaussian: GaussianFit,
                       cfg: SampleConfig, data_seed: int) -> dict[str, float]:
    """Mean negative log-likelihood of the first ``likelihood_n`` test points, nats per dim in
    data space: the model's (``test_nll``) and the Gaussian fit's (``test_nll_baseline``)."""
    test = data.test[:cfg.likelihood_n]
    baseline = float(-gaussian.log_prob(test).mean() / data.dim)
    if data.source.name != "gaussian":
        log.warning("test_nll: NaN, the source %s has no log-density to start from",
                    data.source.name)
        return {"test_nll": math.nan, "test_nll_baseline": baseline}
    device = next(model.parameters()).device
    divergence = choose_divergence(cfg.divergence, len(test), data.dim, cfg.hutchinson_probes,
                                   torch.Generator().manual_seed(data_seed))
    nll = nll_per_dim(model.eval(), test.to(device), data.normalizer, divergence,
                      cfg.likelihood_steps)
    return {"test_nll": float(nll.mean()), "test_nll_baseline": baseline}


@torch.no_grad()
def evaluate(model: nn.Module, data: DataSplits, cfg: SampleConfig, seed: int,
             data_seed: int) -> Evaluation:
    device = next(model.parameters()).device
    count = cfg.n if cfg.n is not None else data.test.shape[0]  # null: the test split's size
    x0 = data.source.sample(count, data.dim, torch.Generator().manual_seed(seed))
    z, nfe = solve(model.eval(), x0.to(device), cfg.solver, cfg.steps, cfg.atol, cfg.rtol,
                   cfg.max_steps)
    samples = data.normalizer.decode(z).cpu()
    # Equal-sized sets make W2 exact; the floor's real reference comes from the train split.
    n = min(count, data.test.shape[0], data.train.shape[0])
    g = torch.Generator().manual_seed(data_seed)
    order = torch.randperm(data.train.shape[0], generator=g)
    reference = data.train[order[:n]]
    gaussian = GaussianFit.fit(data.train[order[:GAUSSIAN_FIT_ROWS]])
    baseline = gaussian.sample(n, g).to(data.train.dtype)
    metrics = sample_metrics(samples[:n], data.test[:n], reference, baseline, data.train, device,
                             seed=data_seed)
    if cfg.project_norm:
        radius = float(torch.linalg.vector_norm(data.train.double(), dim=1).mean())
        projected = project_norm(samples[:n], radius)
        scores = set_scores(projected, data.test[:n], projected, data.train, device, data_seed)
        metrics |= {f"{key}{PROJECTED}": value for key, value in scores.items()}
    if cfg.likelihood:
        metrics |= likelihood_metrics(model, data, gaussian, cfg, data_seed)
    return Evaluation(samples=samples, metrics=metrics, nfe=nfe)


def plot_samples(evaluation: Evaluation, data: DataSplits, png: Path, title: str) -> None:
    """Samples over the test data, titled with W2 (2-d) or FD, its floor and Gaussian baseline."""
    m, key = evaluation.metrics, "w2" if data.dim == 2 else "fd"
    title = (f"{title}   {key.upper()}={m[key]:.4g} (floor {m[f'{key}_floor']:.4g}, "
             f"gauss {m[f'{key}_baseline']:.4g})")
    if data.name.startswith("digits"):
        image_grid(evaluation.samples, png, title, reference=data.test)
    elif data.dim == 1:
        histogram(evaluation.samples, data.test, png, title)
    elif data.dim == 2:
        scatter(evaluation.samples, data.test, png, title)
    else:
        pca_scatter(evaluation.samples, data.test, png, title)


def save_samples(path: Path, samples: torch.Tensor, reference: torch.Tensor) -> None:
    """A run's end-of-run samples and the test points they were measured against, both in data
    space, for the report's montage (``flowstudy.figures`` reads them)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, samples=samples.numpy(), reference=reference[:samples.shape[0]].numpy())


def evaluate_best(cfg: Config, result: RunResult, data: DataSplits, template: nn.Module,
                  best: Checkpoint, tracker: Tracker, checkpoint_dir: Path) -> None:
    """The end of a run: sample with the best checkpoint's EMA weights (loaded into a copy of
    ``template``, so the training state is left as it was), measure, plot, and record it all in
    ``result`` and the tracker."""
    model = copy.deepcopy(template)
    model.load_state_dict(best.ema_weights())
    evaluation = evaluate(model, data, cfg.sample, cfg.seed, cfg.dataset.seed)
    png = checkpoint_dir / "samples.png"
    plot_samples(evaluation, data, png, title=f"{cfg.name} (epoch {best.epoch})")
    save_samples(checkpoint_dir / "samples.npz", evaluation.samples, data.test)
    sample_log = {f"sample/{k}": v for k, v in evaluation.metrics.items()}
    tracker.log({**sample_log, "sample/nfe": evaluation.nfe}, result.steps)
    tracker.image("samples", png, result.steps, caption=cfg.name)
    result.metrics, result.nfe, result.samples_png = evaluation.metrics, evaluation.nfe, str(png)
    tracker.summary({"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                     "checkpoint": result.checkpoint, "stop_reason": result.stop_reason,
                     **{k: getattr(result, k) for k in COST_KEYS}})
