"""ODE solvers that carry samples from the source (t=0) to the data (t=1).

Each returns the end points and the number of velocity evaluations (NFE) it used.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _at(x: torch.Tensor, t: float) -> torch.Tensor:
    return torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype)


def euler(v: Velocity, x: torch.Tensor, steps: int) -> tuple[torch.Tensor, int]:
    h = 1.0 / steps
    for i in range(steps):
        x = x + h * v(x, _at(x, i * h))
    return x, steps


def midpoint(v: Velocity, x: torch.Tensor, steps: int) -> tuple[torch.Tensor, int]:
    h = 1.0 / steps
    for i in range(steps):
        t = i * h
        x = x + h * v(x + 0.5 * h * v(x, _at(x, t)), _at(x, t + 0.5 * h))
    return x, 2 * steps


def rk4(v: Velocity, x: torch.Tensor, steps: int) -> tuple[torch.Tensor, int]:
    h = 1.0 / steps
    for i in range(steps):
        t = i * h
        k1 = v(x, _at(x, t))
        k2 = v(x + 0.5 * h * k1, _at(x, t + 0.5 * h))
        k3 = v(x + 0.5 * h * k2, _at(x, t + 0.5 * h))
        k4 = v(x + h * k3, _at(x, t + h))
        x = x + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x, 4 * steps


def dopri5(v: Velocity, x: torch.Tensor, atol: float, rtol: float) -> tuple[torch.Tensor, int]:
    from torchdiffeq import odeint  # the standard adaptive solver; imported only when used

    nfe = 0

    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        return v(y, t.expand(y.shape[0]).to(y.dtype))

    times = torch.tensor([0.0, 1.0], device=x.device, dtype=x.dtype)
    return odeint(f, x, times, method="dopri5", atol=atol, rtol=rtol)[-1], nfe


FIXED_STEP = {"euler": euler, "midpoint": midpoint, "rk4": rk4}
SOLVERS = (*FIXED_STEP, "dopri5")


@torch.no_grad()
def solve(v: Velocity, x0: torch.Tensor, solver: str, steps: int, atol: float = 1e-5,
          rtol: float = 1e-5) -> tuple[torch.Tensor, int]:
    if solver == "dopri5":
        return dopri5(v, x0, atol, rtol)
    return FIXED_STEP[solver](v, x0, steps)
