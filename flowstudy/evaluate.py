"""End-of-run evaluation: sample with the best EMA weights, measure, and draw the samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from flowstudy.checkpoint import load_checkpoint
from flowstudy.config import Config, SampleConfig
from flowstudy.data import DataSplits
from flowstudy.flows.solvers import solve
from flowstudy.metrics import sample_metrics
from flowstudy.plots import image_grid, pca_scatter, scatter
from flowstudy.results import COST_KEYS, RunResult
from flowstudy.tracking import Tracker
from flowstudy.trainer import TrainState


@dataclass
class Evaluation:
    samples: torch.Tensor  # data space, on the CPU
    metrics: dict[str, float]  # sample_metrics on min(sample.n, n_test, n_train) points each
    nfe: int  # velocity evaluations of the solver


@torch.no_grad()
def evaluate(model: nn.Module, data: DataSplits, cfg: SampleConfig, seed: int) -> Evaluation:
    device = next(model.parameters()).device
    count = cfg.n if cfg.n is not None else data.test.shape[0]  # null: the test split's size
    x0 = data.source.sample(count, data.dim, torch.Generator().manual_seed(seed))
    z, nfe = solve(model.eval(), x0.to(device), cfg.solver, cfg.steps, cfg.atol, cfg.rtol)
    samples = data.normalizer.decode(z).cpu()
    # Equal-sized sets make W2 exact; the floor's real reference comes from the train split.
    n = min(count, data.test.shape[0], data.train.shape[0])
    pick = torch.randperm(data.train.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    metrics = sample_metrics(samples[:n], data.test[:n], data.train[pick])
    return Evaluation(samples=samples, metrics=metrics, nfe=nfe)


def plot_samples(evaluation: Evaluation, data: DataSplits, png: Path, title: str) -> None:
    m = evaluation.metrics
    if data.name.startswith("digits"):
        image_grid(evaluation.samples, png,
                   f"{title}   FD={m['fd']:.2f} (floor {m['fd_floor']:.2f})")
    elif data.dim == 2:
        scatter(evaluation.samples, data.test, png,
                f"{title}   W2={m['w2']:.4f} (floor {m['w2_floor']:.4f})")
    else:
        pca_scatter(evaluation.samples, data.test, png,
                    f"{title}   FD={m['fd']:.3f} (floor {m['fd_floor']:.3f})")


def evaluate_best(cfg: Config, result: RunResult, data: DataSplits, state: TrainState,
                  tracker: Tracker, checkpoint_dir: Path, device: torch.device,
                  step: int) -> None:
    """The end of a run: sample with the best checkpoint's EMA weights, measure, plot, and
    record it all in ``result`` and the tracker."""
    best_path = checkpoint_dir / "best.pt"
    if not best_path.exists():
        raise RuntimeError(f"no epoch produced a finite {cfg.train.monitor} validation "
                           f"loss, so there is no best checkpoint to evaluate")
    best = load_checkpoint(best_path, device)
    state.ema.load_state_dict(best["ema"])
    evaluation = evaluate(state.ema.module, data, cfg.sample, seed=cfg.seed)
    png = checkpoint_dir / "samples.png"
    plot_samples(evaluation, data, png, title=f"{cfg.name} (epoch {best['epoch']})")
    sample_log = {f"sample/{k}": v for k, v in evaluation.metrics.items()}
    tracker.log({**sample_log, "sample/nfe": evaluation.nfe}, step)
    tracker.image("samples", png, step, caption=cfg.name)
    result.metrics, result.nfe, result.samples_png = evaluation.metrics, evaluation.nfe, str(png)
    tracker.summary({"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                     "checkpoint": result.checkpoint, "stop_reason": result.stop_reason,
                     **{k: getattr(result, k) for k in COST_KEYS}})
