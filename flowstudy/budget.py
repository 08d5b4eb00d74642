"""Compute budgets (``train.budget.flops``, ``.optimizer_steps`` or ``.seconds``): every run of
a sweep stops at the same measured cost, and the cosine schedule ends where the budget does.

- **flops**: the run takes ``floor(budget / flops_per_step)`` optimizer steps, where
  ``flops_per_step`` is counted once at build on the resolved model (``flowstudy.cost.step_flops``:
  forward and backward of one global batch under ``FlopCounterMode``). It ends within one step
  of the budget: ``budget - flops_per_step < steps x flops_per_step <= budget``.
- **optimizer_steps**: the run takes exactly that many steps. (Not ``steps``: ``sample.steps``
  would then be named in full in run names, renaming every earlier run that set it.)
- **seconds**: the run stops at the first log point (every ``train.log_every`` steps) or epoch
  end at which the wall time of ``fit`` (validation and checkpoints included) has reached the
  budget. The schedule's length cannot be known in advance: it is estimated once, at the first
  log point after the lr warmup (and after the first log point, so start-up costs such as
  allocation and CUDA-graph capture are left out), as the steps taken so far plus the measured
  rate (steps per second since the first log point) times the seconds left. During warmup the
  schedule's length does not matter (warmup is linear in the step alone); before the estimate,
  the schedule is the epochs' one. A run slower than its estimate stops before its lr reaches
  the minimum, a faster one finishes at the minimum lr. Wall time depends on the machine and on
  what else runs on it: seconds budgets compare runs on one device only, and result.json
  records the device.

A step taken counts against a budget whether it was applied or skipped for a non-finite
gradient (its forward and backward ran). ``epochs`` and early stopping still apply: whichever
comes first ends the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from flowstudy.errors import ConfigError

KINDS = ("flops", "optimizer_steps", "seconds")


def chosen(budget: Any) -> tuple[str, float] | None:
    """The one budget set in a ``train.budget`` section (kind, value), or None."""
    if budget is None:
        return None
    set_ = [(k, getattr(budget, k)) for k in KINDS if getattr(budget, k) is not None]
    if len(set_) > 1:
        raise ConfigError("train.budget", dict(set_), "at most one of train.budget.flops, "
                          "train.budget.optimizer_steps, train.budget.seconds")
    return set_[0] if set_ else None


def planned_steps(kind: str, value: float, flops_per_step: float) -> int | None:
    """The steps a budget allows: floor(value / flops_per_step) for flops, the value for steps,
    None for seconds (decided by the clock; see the module docstring)."""
    if kind == "optimizer_steps":
        return int(value)
    if kind == "seconds":
        return None
    if kind != "flops":
        raise ValueError(f"unknown budget kind {kind!r}; one of {', '.join(KINDS)}")
    steps = math.floor(value / flops_per_step)
    # Float division may land a hair below an exact multiple: take the step it allows.
    while (steps + 1) * flops_per_step <= value:
        steps += 1
    while steps > 0 and steps * flops_per_step > value:
        steps -= 1
    if steps < 1:
        raise ConfigError("train.budget.flops", value,
                          f"at least the {flops_per_step:.4g} FLOPs of one training step")
    return steps


def estimate_steps(taken: int, elapsed: float, budget_s: float, mark_taken: int,
                   mark_s: float) -> int:
    """A seconds budget's schedule length: ``taken`` steps so far plus the steps the rate
    measured since the mark (steps per second) makes in the seconds left."""
    rate = (taken - mark_taken) / max(elapsed - mark_s, 1e-9)
    return taken + max(0, math.floor(rate * max(0.0, budget_s - elapsed)))


@dataclass
class Budget:
    """One run's budget as planned at build; ``fit`` asks it when the run is spent."""

    kind: str  # flops | steps | seconds
    value: float
    flops_per_step: float
    planned_steps: int | None  # None: seconds, until estimated (then the estimate)
    warmup_steps: int = 0
    device: str | None = None  # what the run trains on; recorded for seconds budgets
    # seconds: (steps taken, seconds) at the first log point, and whether the estimate is made
    mark: tuple[int, float] | None = None
    estimated: bool = False

    @classmethod
    def plan(cls, kind: str, value: float, flops_per_step: float, warmup_steps: int = 0,
             device: str | None = None) -> Budget:
        return cls(kind, value, flops_per_step, planned_steps(kind, value, flops_per_step),
                   warmup_steps, device)

    @property
    def by_steps(self) -> bool:
        """Whether the budget is a number of steps known before training (flops, steps)."""
        return self.kind != "seconds"

    def spent_at_step(self, taken: int) -> bool:
        """After a step: a flops or steps budget is spent at its planned step exactly."""
        return self.by_steps and taken >= self.planned_steps

    def spent_at_clock(self, elapsed: float) -> bool:
        """At a log point or epoch end (the host has synced): a seconds budget is spent."""
        return self.kind == "seconds" and elapsed >= self.value

    def observe(self, taken: int, elapsed: float) -> int | None:
        """At a log point of a seconds budget: the schedule's length, the one time it can be
        estimated (after the first log point and the warmup), else None."""
        if self.kind != "seconds" or self.estimated:
            return None
        if self.mark is None:
            self.mark = (taken, elapsed)
            return None
        if taken < self.warmup_steps or taken <= self.mark[0]:
            return None
        self.planned_steps = estimate_steps(taken, elapsed, self.value, *self.mark)
        self.estimated = True
        return self.planned_steps

    def schedule_steps(self, epochs_steps: int) -> int:
        """The cosine's length: the budget's steps where known, else the epochs'."""
        return self.planned_steps if self.planned_steps is not None else epochs_steps

    def describe(self) -> str:
        """For the ``resolved:`` line."""
        if self.kind == "flops":
            return (f"budget {self.value:.4g} FLOPs = {self.planned_steps} steps of "
                    f"{self.flops_per_step:.4g}")
        if self.kind == "optimizer_steps":
            return f"budget {self.planned_steps} steps"
        return (f"budget {self.value:g} s on {self.device} (wall time: not comparable across "
                f"machines; schedule length estimated after warmup)")

    def record(self, taken: int, seconds: float) -> dict[str, Any]:
        """What result.json keeps: the budget, the steps it planned, what was spent."""
        out: dict[str, Any] = {"kind": self.kind, "value": self.value,
                               "planned_steps": self.planned_steps,
                               "flops_per_step": self.flops_per_step, "steps_taken": taken,
                               "flops_spent": taken * self.flops_per_step,
                               "seconds": round(seconds, 3)}
        if self.kind == "seconds":
            out["device"] = self.device
            out["estimated_schedule"] = self.estimated
        return out
