"""One optimizer step that never waits on the device: forward, backward, gradient norm, the
non-finite guard, clipping, AdamW at the scheduled lr, EMA and the loss tally, all decided and
counted by tensor ops on the model's device.

A step whose gradient norm is NaN/Inf changes no weight, EMA, moment or Adam step count: the fused
AdamW kernel takes the guard as its ``found_inf`` tensor, the EMA weight is multiplied by it, and
the counts add it. The host reads the tally (``Tally.read``) only when it logs, checks divergence,
validates or checkpoints. Once ``nan_patience`` steps in a row were skipped every later step is
skipped too, so the state the host finds at its next check is the state before divergence.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from flowstudy.batches import Batch, BatchSource
from flowstudy.schedule import WarmupCosine
from flowstudy.state import Engine, Tally, TrainState


@dataclass(frozen=True)
class StepConfig:
    """What a step needs from ``train.*``."""

    schedule: WarmupCosine
    grad_clip: float
    accum_steps: int
    nan_patience: int


def uses_fused_step(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer takes its lr and its skip decision as device tensors (torch's fused
    AdamW does); otherwise the step reads both on the host, as it must."""
    return bool(optimizer.defaults.get("fused"))


def attach_lr(optimizer: torch.optim.Optimizer, tally: Tally) -> None:
    """Give the optimizer's param groups the tally's lr tensor (fused) or its value (otherwise)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor) and group["lr"] is not tally.lr:
            tally.lr.copy_(group["lr"])  # a checkpoint's lr: keep its value, use our tensor
        group["lr"] = tally.lr if uses_fused_step(optimizer) else float(tally.lr)


def forward_backward(state: TrainState, engine: Engine, path: Any, batch: Batch,
                     accum_steps: int) -> torch.Tensor:
    """Gradients of this rank's share of ``batch`` in ``accum_steps`` micro-batches, unscaled;
    returns this rank's mean loss."""
    state.optimizer.zero_grad(set_to_none=True)
    shard = batch.part(engine.dist.rank, engine.dist.world)
    losses = []
    for i in range(accum_steps):
        micro = shard.part(i, accum_steps)
        last = i == accum_steps - 1
        # DDP averages gradients once per optimizer step, on the last micro-batch.
        sync = contextlib.nullcontext() if last or not engine.dist.active else \
            engine.forward.no_sync()
        with sync:
            with engine.precision.autocast():
                xt, target = path.sample(micro.x0, micro.x1, micro.t, micro.eps)
                out = engine.forward(xt, micro.t)
            loss = F.mse_loss(out.float(), target.float())
            if accum_steps > 1:
                loss = loss / accum_steps
            engine.precision.backward(loss)
        losses.append(loss.detach())
    engine.precision.unscale(state.optimizer)
    return losses[0] if accum_steps == 1 else torch.stack(losses).sum()


def train_step(state: TrainState, engine: Engine, path: Any, batch: Batch, cfg: StepConfig,
               params: list[torch.Tensor]) -> None:
    """One optimizer step on ``batch``, with no host read when the optimizer is fused."""
    tally, optimizer = state.tally, state.optimizer
    fused = uses_fused_step(optimizer)
    tally.lr.copy_(cfg.schedule.at(tally.steps))
    if not fused:  # a Python-float lr: one host read
        for group in optimizer.param_groups:
            group["lr"] = float(tally.lr)
    loss = forward_backward(state, engine, path, batch, cfg.accum_steps)
    norm = nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    # Once nan_patience steps in a row were skipped the run has diverged: freeze it.
    alive = tally.streak < cfg.nan_patience
    apply = torch.isfinite(norm) & alive
    # Scales by min(1, clip / (norm + 1e-6)): gradients within the clip are multiplied by 1.
    nn.utils.clip_grads_with_norm_(params, cfg.grad_clip, norm)
    engine.precision.step(optimizer, skip=(~apply).float(), fused=fused)
    state.ema.update(apply)
    bad = (~apply & alive).long()
    tally.steps.add_(apply.long())
    tally.skipped.add_(bad)
    tally.streak.mul_((~apply).long()).add_(bad)  # reset by a step, kept while frozen
    tally.window_loss.add_(torch.where(apply, loss, torch.zeros_like(loss)))
    tally.window_steps.add_(apply.long())
    tally.grad_norm.copy_(norm)


class EagerSteps:
    """Steps run from Python, one per batch of ``BatchSource.epoch``."""

    reason = "eager"

    def __init__(self, state: TrainState, engine: Engine, batches: BatchSource,
                 cfg: StepConfig) -> None:
        self.state, self.engine, self.batches, self.cfg = state, engine, batches, cfg
        self.params = [p for p in state.model.parameters() if p.requires_grad]

    def set_schedule(self, schedule: WarmupCosine) -> None:
        """Steps from now on follow ``schedule`` (a seconds budget's estimated length)."""
        self.cfg = dataclasses.replace(self.cfg, schedule=schedule)

    def epoch(self, epoch: int, skip: int) -> Iterator[None]:
        """Run the steps of ``epoch`` after the first ``skip``, yielding after each."""
        s = self.state
        for batch in self.batches.epoch(epoch, s.shuffle_gen, s.noise_gen, skip=skip):
            train_step(s, self.engine, self.batches.flow.path, batch, self.cfg, self.params)
            yield
