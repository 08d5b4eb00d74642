"""Minibatch couplings: re-pair a batch of source points x0 with data points x1.

They depend only on the data and the noise, never on the model, so the trainer can compute them
ahead of the step in a background thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from flowstudy.transport import optimal_assignment


class Coupling(Protocol):
    def __call__(self, x0: torch.Tensor, x1: torch.Tensor,
                 g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]: ...


def _squared_distances(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x0.double(), x1.double()).square()


@dataclass(frozen=True)
class ExactOTCoupling:
    """The optimal assignment for squared Euclidean cost: with equal uniform batches the exact OT
    plan is a permutation, so no plan sampling is needed."""

    def __call__(self, x0: torch.Tensor, x1: torch.Tensor,
                 g: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        cols = optimal_assignment(_squared_distances(x0, x1).cpu().numpy())
        return x0, x1[torch.from_numpy(cols).to(x1.device)]


def sinkhorn_log_plan(cost: torch.Tensor, reg: float, iters: int, tol: float = 1e-6
                      ) -> torch.Tensor:
    """log of the entropic OT plan between uniform marginals.

    Sinkhorn's matrix scaling in float64 is fast (two mat-vecs per iteration); when the kernel
    exp(-C / reg) underflows (small reg against large costs) the log-domain iteration, slower but
    stable, takes over. Both stop once the row marginals are within ``tol`` (L1).
    """
    n, m = cost.shape
    cost = cost.double()
    a = torch.full((n,), 1.0 / n, dtype=torch.float64, device=cost.device)
    b = torch.full((m,), 1.0 / m, dtype=torch.float64, device=cost.device)
    kernel = torch.exp(-(cost - cost.min()) / reg)
    v = torch.ones_like(b)
    with torch.no_grad():
        for i in range(iters):
            u = a / (kernel @ v)
            v = b / (kernel.T @ u)
            if not (torch.isfinite(u).all() and torch.isfinite(v).all()):
                return _sinkhorn_log_domain(cost, reg, iters, tol, a.log(), b.log())
            if i % 10 == 9 and (u * (kernel @ v) - a).abs().sum() < tol:
                break
    return u.log()[:, None] + kernel.log() + v.log()[None, :]


def _sinkhorn_log_domain(cost: torch.Tensor, reg: float, iters: int, tol: float,
                         log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    log_k = -cost / reg
    f, g = torch.zeros_like(log_a), torch.zeros_like(log_b)
    for i in range(iters):
        f = log_a - torch.logsumexp(log_k + g[None, :], dim=1)
        g = log_b - torch.logsumexp(log_k + f[:, None], dim=0)
        if i % 10 == 9:  # columns are exact after the g-update; stop once the rows are too
            row = torch.logsumexp(log_k + f[:, None] + g[None, :], dim=1)
            if (row.exp() - log_a.exp()).abs().sum() < tol:
                break
    return log_k + f[:, None] + g[None, :]


@dataclass(frozen=True)
class EntropicOTCoupling:
    """Pairs drawn from the entropic OT plan with regularisation ``reg``: each x0 keeps its place
    and gets an x1 drawn from the plan's row (its conditional)."""

    reg: float
    iters: int = 1000

    def __call__(self, x0: torch.Tensor, x1: torch.Tensor,
                 g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        log_plan = sinkhorn_log_plan(_squared_distances(x0, x1), self.reg, self.iters)
        rows = torch.softmax(log_plan, dim=1).to(x1.dtype)
        cols = torch.multinomial(rows, 1, generator=g).squeeze(1)
        return x0, x1[cols]
