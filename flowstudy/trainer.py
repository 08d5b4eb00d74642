"""The training loop: epochs of flow-matching steps, validation, early stopping, checkpoints.

Order of events per step: draw (x0, t), build x_t and the target from the flow, MSE, backward,
clip, optimizer step (at the scheduled lr), EMA update. Per epoch: validate raw and EMA weights on
fixed noise, update early stopping, write ``best.pt`` on improvement (and ``last.pt`` if asked).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from flowstudy.config import TrainConfig
from flowstudy.early_stopping import EarlyStopping
from flowstudy.ema import EMA
from flowstudy.flows.paths import ProbabilityPath
from flowstudy.rng import rng_state
from flowstudy.schedule import WarmupCosine

log = logging.getLogger(__name__)


class MetricsSink(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...


@dataclass
class TrainState:
    """Everything that changes during training; a checkpoint is its ``state_dict()``."""

    model: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    stopper: EarlyStopping
    shuffle_gen: torch.Generator  # epoch permutations (CPU)
    noise_gen: torch.Generator  # x0 and t of training steps (on the model's device)
    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps completed
    # Train losses since the last log line, summed on the device so the loop never waits on it;
    # checkpointed so a resumed run logs the same averages as an uninterrupted one.
    window_loss: torch.Tensor | None = None
    window_steps: int = 0

    def __post_init__(self) -> None:
        if self.window_loss is None:
            device = next(self.model.parameters()).device
            self.window_loss = torch.zeros((), device=device)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "early_stopping": self.stopper.state_dict(),
            "generators": {"shuffle": self.shuffle_gen.get_state(),
                           "noise": self.noise_gen.get_state()},
            "epoch": self.epoch,
            "step": self.step,
            "window": {"loss": self.window_loss.clone(), "steps": self.window_steps},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.stopper.load_state_dict(state["early_stopping"])
        self.shuffle_gen.set_state(state["generators"]["shuffle"].cpu())
        self.noise_gen.set_state(state["generators"]["noise"].cpu())
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.window_loss.copy_(state["window"]["loss"])
        self.window_steps = int(state["window"]["steps"])


@dataclass
class ValidationSet:
    """Validation data with its noise and times drawn once, so every epoch sees the same problem."""

    x1: torch.Tensor
    x0: torch.Tensor
    t: torch.Tensor

    @classmethod
    def fixed(cls, x1: torch.Tensor, seed: int) -> ValidationSet:
        gen = torch.Generator().manual_seed(seed)
        x0 = torch.randn(x1.shape, generator=gen)
        t = torch.rand(x1.shape[0], generator=gen)
        return cls(x1, x0.to(x1.device), t.to(x1.device))


@dataclass
class FitResult:
    stop_reason: str  # max_epochs | early_stopping
    epochs: int
    steps: int


def batches(data: torch.Tensor, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled full batches of an in-memory tensor (the last partial batch is dropped)."""
    order = torch.randperm(data.shape[0], generator=gen).to(data.device)
    for start in range(0, data.shape[0] - batch_size + 1, batch_size):
        yield data[order[start:start + batch_size]]


@torch.no_grad()
def validation_loss(model: nn.Module, path: ProbabilityPath, val: ValidationSet,
                    chunk: int = 4096) -> float:
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=val.x1.device, dtype=torch.float64)
    for i in range(0, val.x1.shape[0], chunk):
        x1, x0, t = val.x1[i:i + chunk], val.x0[i:i + chunk], val.t[i:i + chunk]
        xt, target = path.sample(x0, x1, t)
        total += F.mse_loss(model(xt, t), target, reduction="sum").double()
    model.train(was_training)
    return (total / val.x1.numel()).item()


def fit(
    cfg: TrainConfig,
    state: TrainState,
    path: ProbabilityPath,
    train_x: torch.Tensor,
    val: ValidationSet,
    sink: MetricsSink,
    checkpoint_dir: Path,
    save: Callable[[Path, dict[str, Any]], None],
    save_last: bool = False,
) -> FitResult:
    """Train until ``cfg.epochs`` or early stopping; ``save(path, state)`` writes checkpoints."""
    model, optimizer, ema, stopper = state.model, state.optimizer, state.ema, state.stopper
    steps_per_epoch = train_x.shape[0] // cfg.batch_size
    schedule = WarmupCosine(cfg.lr, cfg.warmup_steps, cfg.epochs * steps_per_epoch,
                            cfg.min_lr_ratio)
    params = [p for p in model.parameters() if p.requires_grad]
    device = train_x.device

    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=state.step, unit="step",
               disable=None, dynamic_ncols=True, leave=False)
    with logging_redirect_tqdm(), bar:
        while state.epoch < cfg.epochs and not stopper.should_stop:
            model.train()
            for x1 in batches(train_x, cfg.batch_size, state.shuffle_gen):
                lr = schedule(state.step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x0 = torch.randn(x1.shape, generator=state.noise_gen, device=device)
                t = torch.rand(x1.shape[0], generator=state.noise_gen, device=device)
                xt, target = path.sample(x0, x1, t)
                loss = F.mse_loss(model(xt, t), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                ema.update()
                state.step += 1

                state.window_loss += loss.detach()
                state.window_steps += 1
                if state.step % cfg.log_every == 0:
                    train_loss = (state.window_loss / state.window_steps).item()
                    sink.log({"train/loss": train_loss, "train/grad_norm": grad_norm.item(),
                              "train/lr": lr, "epoch": state.epoch}, state.step)
                    bar.update(state.step - bar.n)
                    bar.set_postfix(epoch=state.epoch + 1, loss=f"{train_loss:.4f}",
                                    lr=f"{lr:.2e}", refresh=False)
                    state.window_loss.zero_()
                    state.window_steps = 0

            state.epoch += 1
            raw = validation_loss(model, path, val)
            ema_loss = validation_loss(ema.module, path, val)
            monitored = ema_loss if cfg.monitor == "ema" else raw
            improved = stopper.update(monitored, state.epoch,
                                      counting=state.step >= cfg.warmup_steps)
            sink.log({"val/raw_loss": raw, "val/ema_loss": ema_loss, "val/best": stopper.best,
                      "epoch": state.epoch}, state.step)
            log.info("epoch %d/%d  step %d  val %.4f  ema %.4f%s", state.epoch, cfg.epochs,
                     state.step, raw, ema_loss, "  *best*" if improved else "")
            if improved or save_last:
                snapshot = {**state.state_dict(), "rng": rng_state()}
                if improved:
                    save(checkpoint_dir / "best.pt", snapshot)
                if save_last:
                    save(checkpoint_dir / "last.pt", snapshot)

    stop_reason = "early_stopping" if stopper.should_stop else "max_epochs"
    if stop_reason == "early_stopping":
        log.info("early stopping after epoch %d: no improvement of %s val loss for %d epochs "
                 "(best %.4f at epoch %d)", state.epoch, cfg.monitor, cfg.patience,
                 stopper.best, stopper.best_epoch)
    return FitResult(stop_reason=stop_reason, epochs=state.epoch, steps=state.step)
