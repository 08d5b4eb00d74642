"""Fixed-step ODE solvers that carry samples from the source (t=0) to the data (t=1)."""

from __future__ import annotations

from collections.abc import Callable

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def euler(velocity: Velocity, x0: torch.Tensor, steps: int) -> torch.Tensor:
    x, dt = x0, 1.0 / steps
    for i in range(steps):
        t = torch.full((x.shape[0],), i * dt, device=x.device, dtype=x.dtype)
        x = x + dt * velocity(x, t)
    return x


SOLVERS: dict[str, Callable[[Velocity, torch.Tensor, int], torch.Tensor]] = {"euler": euler}
