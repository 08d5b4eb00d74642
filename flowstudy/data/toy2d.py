"""Two-dimensional toy distributions, generated (no download) from a seeded generator."""

from __future__ import annotations

import math

import torch


def moons(n: int, noise: float, generator: torch.Generator) -> torch.Tensor:
    """Two interleaving half circles, points uniform along each arc, plus Gaussian noise."""
    upper = torch.rand(n, generator=generator) < 0.5
    theta = torch.rand(n, generator=generator) * math.pi
    x = torch.where(upper, torch.cos(theta), 1.0 - torch.cos(theta))
    y = torch.where(upper, torch.sin(theta), 0.5 - torch.sin(theta))
    points = torch.stack([x, y], dim=1)
    return points + noise * torch.randn(n, 2, generator=generator)
