"""ODE solvers that carry samples from the source (t=0) to the data (t=1).

Each returns the end points and the number of velocity evaluations (NFE) it used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

from flowstudy.errors import UserError

log = logging.getLogger("flowstudy")
Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# dopri5 (torchdiffeq's) evaluates the velocity twice to choose its first step, then 6 times per
# step tried (the 7th stage of one is the first of the next): steps follow from the NFE.
DOPRI5_START_NFE, DOPRI5_STEP_NFE = 2, 6
PROGRESS_EVERY_S = 10.0  # a long adaptive solve says how far it is this often


class StepLimit(UserError):
    """An adaptive solve would take more than ``sample.max_steps`` steps."""


def dopri5_steps(nfe: int) -> int:
    """The steps (accepted or rejected) dopri5 began in ``nfe`` velocity evaluations."""
    return max(0, -(-(nfe - DOPRI5_START_NFE) // DOPRI5_STEP_NFE))


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


def dopri5(v: Velocity, x: torch.Tensor, atol: float, rtol: float,
           max_steps: int) -> tuple[torch.Tensor, int]:
    """Adaptive steps to the tolerances, at most ``max_steps`` of them: tight tolerances can
    otherwise take an hour in silence. Says where it is every ``PROGRESS_EVERY_S`` seconds."""
    from torchdiffeq import odeint  # the standard adaptive solver; imported only when used

    nfe = 0
    report_at = time.monotonic() + PROGRESS_EVERY_S

    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal nfe, report_at
        nfe += 1
        if dopri5_steps(nfe) > max_steps:
            raise StepLimit(f"sample.max_steps={max_steps} reached: dopri5 at atol={atol:g}, "
                            f"rtol={rtol:g} had carried the samples to t={float(t):.3f} of 1; "
                            f"loosen sample.atol and sample.rtol, or raise sample.max_steps")
        if time.monotonic() > report_at:
            log.info("dopri5: t=%.3f of 1 after %d steps (at most sample.max_steps=%d)",
                     float(t), dopri5_steps(nfe), max_steps)
            report_at = time.monotonic() + PROGRESS_EVERY_S
        return v(y, t.expand(y.shape[0]).to(y.dtype))

    times = torch.tensor([0.0, 1.0], device=x.device, dtype=x.dtype)
    return odeint(f, x, times, method="dopri5", atol=atol, rtol=rtol)[-1], nfe


def solver_steps(solver: str, steps: int, nfe: int) -> int:
    """The steps a solve took: the fixed count, or those dopri5 chose."""
    return dopri5_steps(nfe) if solver == "dopri5" else steps


FIXED_STEP = {"euler": euler, "midpoint": midpoint, "rk4": rk4}
SOLVERS = (*FIXED_STEP, "dopri5")


@torch.no_grad()
def solve(v: Velocity, x0: torch.Tensor, solver: str, steps: int, atol: float = 1e-5,
          rtol: float = 1e-5, max_steps: int = 1000) -> tuple[torch.Tensor, int]:
    """The end points and the NFE; ``max_steps`` bounds dopri5 (sample.max_steps)."""
    if solver == "dopri5":
        return dopri5(v, x0, atol, rtol, max_steps)
    return FIXED_STEP[solver](v, x0, steps)
