"""The training loop: epochs of flow-matching steps, validation, early stopping, checkpoints.

Order of events per step: take the next (x0, x1, t, eps) batch, build x_t and the target from the
flow's path, MSE, backward, clip, optimizer step (at the scheduled lr), EMA update. Per epoch:
validate raw and EMA weights on fixed noise, update early stopping, write ``best.pt`` on
improvement (and ``last.pt`` if asked).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from flowstudy.batches import BatchSource
from flowstudy.config import TrainConfig
from flowstudy.data import Source
from flowstudy.distributed import Dist
from flowstudy.early_stopping import EarlyStopping
from flowstudy.ema import EMA
from flowstudy.errors import Diverged
from flowstudy.flows import Flow
from flowstudy.flows.paths import ProbabilityPath
from flowstudy.graph_step import training_steps
from flowstudy.interrupt import Interrupted, StopRequest
from flowstudy.precision import Precision
from flowstudy.rng import rng_state
from flowstudy.schedule import WarmupCosine
from flowstudy.step import StepConfig, Tally, attach_lr

log = logging.getLogger(__name__)


class MetricsSink(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...


def _generator_states(shuffle: torch.Generator, noise: torch.Generator) -> dict[str, torch.Tensor]:
    return {"shuffle": shuffle.get_state(), "noise": noise.get_state()}


@dataclass
class TrainState:
    """Everything that changes during training; a checkpoint is its ``state_dict()``."""

    model: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    stopper: EarlyStopping
    shuffle_gen: torch.Generator  # epoch permutations (CPU)
    noise_gen: torch.Generator  # x0, t, eps and augmentation draws (on the model's device)
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done in the epoch in progress
    # Steps applied, skipped, the loss window and the lr, counted on the device by every step
    # and read by the host only when it logs, validates or checkpoints.
    tally: Tally | None = None
    # Generator states at the start of the epoch in progress: a resumed run restores these and
    # replays the draws of the batches already done (a prefetching producer may be ahead).
    epoch_start: dict[str, torch.Tensor] | None = None
    scaler: torch.amp.GradScaler | None = None  # fp16 loss scale
    step: int = 0  # optimizer steps applied, as of the host's latest read of the tally

    def __post_init__(self) -> None:
        if self.tally is None:
            self.tally = Tally.zeros(next(self.model.parameters()).device)
        if self.epoch_start is None:
            self.epoch_start = _generator_states(self.shuffle_gen, self.noise_gen)

    def read_tally(self) -> dict[str, float]:
        """Read the device's counts (a host sync) and bring ``step`` up to date."""
        counts = self.tally.read()
        self.step = int(counts["steps"])
        return counts

    def state_dict(self) -> dict[str, Any]:
        counts = self.read_tally()
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "early_stopping": self.stopper.state_dict(),
            "generators": {k: v.clone() for k, v in self.epoch_start.items()},
            "epoch": self.epoch,
            "step": self.step,
            "batch": self.batch,
            "window": {"loss": self.tally.window_loss.clone(),
                       "steps": int(counts["window_steps"])},
            "nonfinite": {"streak": int(counts["streak"]), "skipped": int(counts["skipped"])},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.stopper.load_state_dict(state["early_stopping"])
        self.epoch_start = {k: v.cpu() for k, v in state["generators"].items()}
        self.shuffle_gen.set_state(self.epoch_start["shuffle"])
        self.noise_gen.set_state(self.epoch_start["noise"])
        self.epoch, self.step, self.batch = int(state["epoch"]), int(state["step"]), int(
            state["batch"])
        self.tally.window_loss.copy_(state["window"]["loss"])
        self.tally.set(steps=self.step, window_steps=int(state["window"]["steps"]),
                       streak=int(state["nonfinite"]["streak"]),
                       skipped=int(state["nonfinite"]["skipped"]))
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


@dataclass
class Engine:
    """How steps run: the forward module (compiled and/or DDP-wrapped, else the model itself),
    the precision, and this process's place among data-parallel ranks."""

    forward: nn.Module
    precision: Precision
    dist: Dist = field(default_factory=Dist)


@dataclass
class ValidationSet:
    """Validation pairs, times and noise drawn (and coupled) once, so every epoch and every run
    on the same data is scored on the same problem."""

    x1: torch.Tensor
    x0: torch.Tensor
    t: torch.Tensor
    eps: torch.Tensor

    @classmethod
    def fixed(cls, x1: torch.Tensor, source: Source, flow: Flow, batch_size: int,
              seed: int) -> ValidationSet:
        g = torch.Generator().manual_seed(seed)
        x0 = source.sample(x1.shape[0], x1.shape[1], g).to(x1.device)
        t = torch.rand(x1.shape[0], generator=g).to(x1.device)
        eps = torch.randn(x1.shape, generator=g).to(x1.device)
        if flow.coupling is not None:  # pair as training does: within batch-sized chunks
            pairs = [flow.coupling(a, b, torch.Generator(x1.device).manual_seed(seed + i))
                     for i, (a, b) in enumerate(zip(x0.split(batch_size), x1.split(batch_size),
                                                    strict=True))]
            x0, x1 = torch.cat([a for a, _ in pairs]), torch.cat([b for _, b in pairs])
        return cls(x1, x0, t, eps)


@dataclass
class FitResult:
    stop_reason: str  # max_epochs | early_stopping
    epochs: int
    steps: int
    seconds: float  # wall time of fit(), validation and checkpoints included
    steps_done: int  # optimizer steps taken by this call (a resumed run counts from its resume)
    step_mode: str = "eager"  # eager | cuda_graph


@torch.no_grad()
def gradient_stats(model: nn.Module) -> dict[str, float]:
    """L2 norm, max |g| and fraction of exact zeros of each parameter tensor's gradient."""
    stats = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            g = p.grad.detach()
            stats[f"grad/{name}/l2"] = g.norm().item()
            stats[f"grad/{name}/max_abs"] = g.abs().max().item()
            stats[f"grad/{name}/zero_frac"] = (g == 0).float().mean().item()
    return stats


@torch.no_grad()
def validation_loss(model: nn.Module, path: ProbabilityPath, val: ValidationSet,
                    ranks: Dist | None = None, chunk: int = 4096) -> float:
    """Mean squared error over the whole validation set; with several ranks each scores its
    share and the sums are all-reduced, so every rank gets the same number."""
    ranks = ranks or Dist()
    n = val.x1.shape[0]
    mine = range(ranks.rank * n // ranks.world, (ranks.rank + 1) * n // ranks.world)
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=val.x1.device, dtype=torch.float64)
    for i in range(mine.start, mine.stop, chunk):
        part = slice(i, min(i + chunk, mine.stop))
        xt, target = path.sample(val.x0[part], val.x1[part], val.t[part], val.eps[part])
        total += F.mse_loss(model(xt, val.t[part]), target, reduction="sum").double()
    model.train(was_training)
    return (ranks.sum_(total) / val.x1.numel()).item()


def fit(
    cfg: TrainConfig,
    state: TrainState,
    batches: BatchSource,
    val: ValidationSet,
    sink: MetricsSink,
    checkpoint_dir: Path,
    save: Callable[[Path, dict[str, Any]], None],
    save_last: bool = False,
    stop: StopRequest | None = None,
    engine: Engine | None = None,
) -> FitResult:
    """Train until ``cfg.epochs`` or early stopping; ``save(path, state)`` writes checkpoints
    (on rank 0; the other ranks wait for it).

    Raises ``Interrupted`` after saving ``last.pt`` when ``stop`` has seen a signal (on any
    rank), and ``Diverged`` after saving ``anomaly.pt`` when ``cfg.nan_patience`` steps in a row
    had a non-finite gradient norm (those steps change no weights, EMA or optimizer state). The
    steps decide that on the device; the host looks at every log point (every ``cfg.log_every``
    batches) and at the end of each epoch.
    """
    started = time.perf_counter()
    device = state.tally.steps.device
    engine = engine or Engine(state.model, Precision.create("fp32", device))
    ranks = engine.dist
    model, ema, stopper, tally = state.model, state.ema, state.stopper, state.tally
    steps_per_epoch = batches.steps_per_epoch
    schedule = WarmupCosine(cfg.lr, cfg.warmup_steps, cfg.epochs * steps_per_epoch,
                            cfg.min_lr_ratio)
    attach_lr(state.optimizer, tally)
    steps = training_steps(cfg, state, engine, batches,
                           StepConfig(schedule, cfg.grad_clip, cfg.accum_steps, cfg.nan_patience))
    counts = state.read_tally()
    first_step, skipped_seen = state.step, counts["skipped"]

    def snapshot() -> dict[str, Any]:
        return {**state.state_dict(), "rng": rng_state()}

    def save_on_main(name: str, snap: dict[str, Any]) -> None:
        if ranks.main:
            save(checkpoint_dir / name, snap)
        ranks.barrier()  # no rank races ahead of a checkpoint

    def stop_if_requested() -> None:
        if stop is not None and ranks.any(stop.signum is not None, device):
            save_on_main("last.pt", snapshot())
            raise Interrupted(stop.signum or signal.SIGTERM, str(checkpoint_dir / "last.pt"))

    def check_divergence(counts: dict[str, float]) -> None:
        nonlocal skipped_seen
        if counts["skipped"] > skipped_seen:
            log.warning("step %d: %d step(s) skipped for a non-finite gradient norm since the "
                        "last check (%d in a row now)", counts["steps"],
                        counts["skipped"] - skipped_seen, counts["streak"])
            skipped_seen = counts["skipped"]
        if counts["streak"] >= cfg.nan_patience:
            save_on_main("anomaly.pt", snapshot())
            raise Diverged(
                f"diverged: {int(counts['streak'])} steps in a row had a non-finite gradient "
                f"norm (after step {state.step}, epoch {state.epoch + 1}); the state before "
                f"divergence is in {checkpoint_dir / 'anomaly.pt'}; try a lower train.lr")

    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=state.step, unit="step",
               disable=None if ranks.main else True, dynamic_ncols=True, leave=False)
    # A signal in the loop stops it after the current step, with last.pt saved.
    deferring = stop.deferring() if stop is not None else contextlib.nullcontext()
    with logging_redirect_tqdm(), bar, deferring:
        while state.epoch < cfg.epochs and not stopper.should_stop:
            model.train()
            for _ in steps.epoch(state.epoch, skip=state.batch):
                state.batch += 1
                taken = state.epoch * steps_per_epoch + state.batch  # batches, applied or not
                if cfg.grad_stats_every and (taken - 1) % cfg.grad_stats_every == 0:
                    # This step's (clipped) gradients, at the count of steps before it.
                    applied = state.read_tally()["streak"] == 0
                    sink.log(gradient_stats(model), state.step - applied)
                if taken % cfg.log_every == 0:
                    counts = state.read_tally()
                    check_divergence(counts)
                    window = ranks.sum_(tally.window_loss / tally.window_steps) / ranks.world
                    train_loss = window.item()
                    sink.log({"train/loss": train_loss, "train/grad_norm": counts["grad_norm"],
                              "train/lr": counts["lr"],
                              "train/skipped_steps": int(counts["skipped"]),
                              "epoch": state.epoch}, state.step)
                    bar.update(state.step - bar.n)
                    bar.set_postfix(epoch=state.epoch + 1, loss=f"{train_loss:.4f}",
                                    lr=f"{counts['lr']:.2e}", refresh=False)
                    tally.window_loss.zero_()
                    tally.window_steps.zero_()
                stop_if_requested()

            state.epoch += 1
            state.batch = 0
            state.epoch_start = _generator_states(state.shuffle_gen, state.noise_gen)
            check_divergence(state.read_tally())
            raw = validation_loss(model, batches.flow.path, val, ranks)
            ema_loss = validation_loss(ema.module, batches.flow.path, val, ranks)
            monitored = ema_loss if cfg.monitor == "ema" else raw
            improved = stopper.update(monitored, state.epoch,
                                      counting=state.step >= cfg.warmup_steps)
            sink.log({"val/raw_loss": raw, "val/ema_loss": ema_loss, "val/best": stopper.best,
                      "epoch": state.epoch}, state.step)
            if ranks.main:
                log.info("epoch %d/%d  step %d  val %.4f  ema %.4f%s", state.epoch, cfg.epochs,
                         state.step, raw, ema_loss, "  *best*" if improved else "")
            if improved or save_last:
                epoch_end = snapshot()
                if improved:
                    save_on_main("best.pt", epoch_end)
                if save_last:
                    save_on_main("last.pt", epoch_end)
            stop_if_requested()

    stop_reason = "early_stopping" if stopper.should_stop else "max_epochs"
    if stop_reason == "early_stopping" and ranks.main:
        log.info("early stopping after epoch %d: no improvement of %s val loss for %d epochs "
                 "(best %.4f at epoch %d)", state.epoch, cfg.monitor, cfg.patience,
                 stopper.best, stopper.best_epoch)
    return FitResult(stop_reason=stop_reason, epochs=state.epoch, steps=state.step,
                     seconds=time.perf_counter() - started,
                     steps_done=state.step - first_step, step_mode=steps.reason)
