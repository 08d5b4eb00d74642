"""Probability paths: given source x0, data x1 and time t, the point x_t and the regression target.

Time runs from t=0 (source) to t=1 (data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


class ProbabilityPath(Protocol):
    def sample(
        self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, regression target) for a batch of pairs and times t of shape [B]."""
        ...


@dataclass(frozen=True)
class CondOTPath:
    """Conditional-OT (rectified) path: x_t = (1 - (1 - s) t) x0 + t x1, target x1 - (1 - s) x0."""

    sigma_min: float = 0.0

    def sample(
        self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t = t[:, None]
        shrink = 1.0 - self.sigma_min
        return (1.0 - shrink * t) * x0 + t * x1, x1 - shrink * x0
