"""Exponential moving average of a model's parameters, updated with fused foreach ops."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMA:
    """Keeps ``module``, a frozen copy of the model whose weights are the running average.

    With warmup (``power`` set) the decay after k updates is ``min(decay, 1 - (1 + k) ** -power)``,
    so a short run averages its recent weights instead of staying near the initial ones; the
    target ``decay`` (0.9999) is reached only after ~1e6 updates at power 2/3.
    """

    def __init__(self, model: nn.Module, decay: float, power: float | None = None) -> None:
        self.decay, self.power, self.updates = decay, power, 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self._ema = list(self.module.parameters())
        self._live = list(model.parameters())
        self._ema_buffers = list(self.module.buffers())
        self._live_buffers = list(model.buffers())

    def current_decay(self) -> float:
        if self.power is None:
            return self.decay
        return min(self.decay, 1.0 - (1.0 + self.updates) ** -self.power)

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        torch._foreach_lerp_(self._ema, self._live, 1.0 - self.current_decay())
        if self._ema_buffers:
            torch._foreach_copy_(self._ema_buffers, self._live_buffers)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
