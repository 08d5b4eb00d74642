"""Exponential moving average of a model's parameters, updated with fused foreach ops."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


def warmup_decay(decay: float, power: float | None, k: int) -> float:
    """The EMA's decay at its k-th update: ``min(decay, 1 - (1 + k) ** -power)``, or ``decay``
    without warmup (power None). Until ``full_decay_step`` the warmup term decides, whatever
    ``decay`` is: the average spans about ``(1 + k) ** power`` recent steps (100 at step 1,000,
    292 at 5,000 for power 2/3), the same for 0.999 as for 0.9999."""
    return decay if power is None else min(decay, 1.0 - (1.0 + k) ** -power)


def full_decay_step(decay: float, power: float | None) -> int:
    """The first update at which the decay is ``decay`` itself: ceil((1 - decay) ** (-1 / power)
    - 1), e.g. 999 for 0.99, 31,622 for 0.999 and 999,999 for 0.9999 at power 2/3."""
    if power is None:
        return 0
    k = max(0, math.ceil((1.0 - decay) ** (-1.0 / power) - 1.0))
    # the closed form up to float rounding, settled by the formula the EMA applies
    while k > 0 and 1.0 - k ** -power >= decay:
        k -= 1
    while 1.0 - (1.0 + k) ** -power < decay:
        k += 1
    return k


class EMA:
    """Keeps ``module``, a frozen copy of the model whose weights are the running average.

    With warmup (``power`` set) the decay after k updates is ``warmup_decay(decay, power, k)``,
    so a short run averages its recent weights instead of staying near the initial ones. The
    update count lives on the model's device, so an update (or a skipped one) never waits on a
    host read.
    """

    def __init__(self, model: nn.Module, decay: float, power: float | None = None) -> None:
        self.decay, self.power = decay, power
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._ema = list(self.module.parameters())
        self._live = list(model.parameters())
        self._ema_buffers = list(self.module.buffers())
        self._live_buffers = list(model.buffers())
        self.count = torch.zeros((), dtype=torch.float64, device=self._ema[0].device)

    @property
    def updates(self) -> int:
        return int(self.count.item())

    def _decay(self, updates: torch.Tensor) -> torch.Tensor:
        if self.power is None:
            return torch.full_like(updates, self.decay)
        return (1.0 - (1.0 + updates) ** -self.power).clamp(max=self.decay)

    def current_decay(self) -> float:
        return float(self._decay(self.count))

    @torch.no_grad()
    def update(self, apply: torch.Tensor | None = None) -> None:
        """Average in the live weights; with ``apply`` (a bool device tensor) False, nothing
        changes, decided on the device."""
        if apply is None:
            apply = torch.ones((), dtype=torch.bool, device=self.count.device)
        count = self.count + apply.double()
        weight = ((1.0 - self._decay(count)) * apply).float()
        # ema += weight * (live - ema): three fused launches, the weight a device tensor.
        step = torch._foreach_sub(self._live, self._ema)
        torch._foreach_mul_(step, weight)
        torch._foreach_add_(self._ema, step)
        for mine, live in zip(self._ema_buffers, self._live_buffers, strict=True):
            mine.copy_(torch.where(apply, live, mine))
        self.count.copy_(count)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.count.fill_(int(state["updates"]))
