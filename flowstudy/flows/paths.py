"""Probability paths: given source x0, data x1, time t (and noise eps where the path is noisy),
the point x_t and the regression target u_t. Time runs from t=0 (source) to t=1 (data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch


class ProbabilityPath(Protocol):
    noisy: bool  # whether sample() needs eps

    def sample(
        self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, eps: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, target) for a batch of pairs, times t of shape [B] and noise like x0."""
        ...


@dataclass(frozen=True)
class CondOTPath:
    """Conditional-OT (rectified) path: x_t = (1 - (1 - s) t) x0 + t x1, target x1 - (1 - s) x0."""

    sigma_min: float = 0.0
    noisy = False

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor,
               eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        t = t[:, None]
        shrink = 1.0 - self.sigma_min
        return (1.0 - shrink * t) * x0 + t * x1, x1 - shrink * x0


@dataclass(frozen=True)
class GaussianCFMPath:
    """Independent CFM (Tong et al.): x_t = t x1 + (1 - t) x0 + sigma eps, target x1 - x0."""

    sigma: float = 0.1

    @property
    def noisy(self) -> bool:
        return self.sigma > 0

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor,
               eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        t = t[:, None]
        xt = t * x1 + (1.0 - t) * x0
        if self.sigma > 0:
            xt = xt + self.sigma * eps
        return xt, x1 - x0


@dataclass(frozen=True)
class VPPath:
    """Variance-preserving trigonometric path: x_t = cos(pi t / 2) x0 + sin(pi t / 2) x1."""

    noisy = False

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor,
               eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        angle = (0.5 * math.pi) * t[:, None]
        cos, sin = torch.cos(angle), torch.sin(angle)
        return cos * x0 + sin * x1, (0.5 * math.pi) * (cos * x1 - sin * x0)


@dataclass(frozen=True)
class BrownianBridgePath:
    """Schrodinger-bridge CFM path: a Brownian bridge of noise sigma sqrt(t (1 - t)) around the
    straight line mu_t = t x1 + (1 - t) x0. Its target adds to x1 - x0 the correction
    (1 - 2t) / (2 t (1 - t)) (x_t - mu_t) that the bridge's shrinking noise induces.
    """

    sigma: float = 0.5
    noisy = True

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor,
               eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        t = t[:, None]
        mu = t * x1 + (1.0 - t) * x0
        xt = mu + self.sigma * torch.sqrt(t * (1.0 - t)) * eps
        # At t = 0 or 1, x_t = mu_t exactly; the tiny constant keeps 0 * inf out of the target.
        correction = (1.0 - 2.0 * t) / (2.0 * t * (1.0 - t) + 1e-8)
        return xt, correction * (xt - mu) + (x1 - x0)
