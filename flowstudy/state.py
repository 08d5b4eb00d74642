"""The state a run trains: what changes during training (``TrainState``, whose ``state_dict``
is the training part of a checkpoint), how steps run (``Engine``), the fixed validation problem
(``ValidationSet``) and what ``fit`` hands back (``FitResult``). Every module of the loop imports
these from here, so trainer, step and graph_step never import each other in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from flowstudy.data import Source
from flowstudy.distributed import Dist
from flowstudy.early_stopping import EarlyStopping
from flowstudy.ema import EMA
from flowstudy.flows import Flow
from flowstudy.precision import Precision


@dataclass
class Tally:
    """Counts and sums the step keeps on the device (0-dim tensors)."""

    steps: torch.Tensor  # optimizer steps applied (int64)
    skipped: torch.Tensor  # steps skipped for a non-finite gradient norm (int64)
    streak: torch.Tensor  # of those, in a row up to now (int64)
    window_loss: torch.Tensor  # sum of the applied steps' losses since the last log line
    window_steps: torch.Tensor  # how many (int64)
    grad_norm: torch.Tensor  # of the latest step, before clipping
    lr: torch.Tensor  # of the latest step; the optimizer's param groups hold this very tensor

    @classmethod
    def zeros(cls, device: torch.device) -> Tally:
        def count() -> torch.Tensor:
            return torch.zeros((), dtype=torch.int64, device=device)

        def value() -> torch.Tensor:
            return torch.zeros((), device=device)

        return cls(count(), count(), count(), value(), count(), value(), value())

    def read(self) -> dict[str, float]:
        """Every field as a Python number, in one host read."""
        names = ("steps", "skipped", "streak", "window_loss", "window_steps", "grad_norm", "lr")
        values = torch.stack([getattr(self, n).double() for n in names]).tolist()
        return dict(zip(names, values, strict=True))

    def set(self, **values: float) -> None:
        for name, value in values.items():
            getattr(self, name).fill_(value)


def generator_states(shuffle: torch.Generator, noise: torch.Generator) -> dict[str, torch.Tensor]:
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
    # train.schedule=plateau: the steps its decay runs from and to, once the monitor plateaued
    plateau: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.tally is None:
            self.tally = Tally.zeros(next(self.model.parameters()).device)
        if self.epoch_start is None:
            self.epoch_start = generator_states(self.shuffle_gen, self.noise_gen)

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
            "schedule": {"plateau": None if self.plateau is None else list(self.plateau)},
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
        # Checkpoints from before train.schedule=plateau have no schedule state: none began.
        plateau = state.get("schedule", {}).get("plateau")
        self.plateau = None if plateau is None else (int(plateau[0]), int(plateau[1]))


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
    stop_reason: str  # max_epochs | early_stopping | budget
    epochs: int
    steps: int
    seconds: float  # wall time of fit(), validation and checkpoints included
    steps_done: int  # optimizer steps taken by this call (a resumed run counts from its resume)
    step_mode: str = "eager"  # eager | cuda_graph
    schedule_steps: int = 0  # the cosine's length as it was finally set
    # steps taken (applied or skipped) over the whole run, counted on the host
    taken: int = 0
    budget: dict | None = None  # flowstudy.budget.Budget.record(), where a budget was set
    # a sample monitor's seconds per measurement, in this call (flowstudy.monitor)
    monitor_s: list[float] = field(default_factory=list)


