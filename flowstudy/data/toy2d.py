"""Two-dimensional toy distributions, generated (no download) from a seeded generator.

Each takes the number of points, the Gaussian noise to add and a ``torch.Generator``, and returns
an [n, 2] tensor on the generator's device.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def _uniform(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g, device=g.device)


def _jitter(points: torch.Tensor, noise: float, g: torch.Generator) -> torch.Tensor:
    return points + noise * torch.randn(points.shape, generator=g, device=g.device)


def moons(n: int, noise: float, g: torch.Generator) -> torch.Tensor:
    """Two interleaving half circles, points uniform along each arc."""
    upper = _uniform(n, g) < 0.5
    theta = _uniform(n, g) * math.pi
    x = torch.where(upper, torch.cos(theta), 1.0 - torch.cos(theta))
    y = torch.where(upper, torch.sin(theta), 0.5 - torch.sin(theta))
    return _jitter(torch.stack([x, y], dim=1), noise, g)


def eight_gaussians(n: int, noise: float, g: torch.Generator) -> torch.Tensor:
    """Eight Gaussian blobs evenly spaced on a circle of radius 2."""
    k = torch.randint(0, 8, (n,), generator=g, device=g.device).float()
    centres = 2.0 * torch.stack([torch.cos(k * math.pi / 4), torch.sin(k * math.pi / 4)], dim=1)
    return _jitter(centres, noise, g)


def checkerboard(n: int, noise: float, g: torch.Generator) -> torch.Tensor:
    """Uniform on the dark squares of a 4x4 board over [-4, 4]^2."""
    x = _uniform(n, g) * 4 - 2
    row = torch.randint(0, 2, (n,), generator=g, device=g.device)
    y = _uniform(n, g) - 2 * row + torch.floor(x) % 2
    return _jitter(2 * torch.stack([x, y], dim=1), noise, g)


def circles(n: int, noise: float, g: torch.Generator) -> torch.Tensor:
    """Two concentric circles of radii 1 and 0.5, equal mass."""
    radius = torch.where(_uniform(n, g) < 0.5, 1.0, 0.5)
    theta = _uniform(n, g) * 2 * math.pi
    return _jitter(radius[:, None] * torch.stack([torch.cos(theta), torch.sin(theta)], 1), noise, g)


def swissroll(n: int, noise: float, g: torch.Generator) -> torch.Tensor:
    """A 2-d Swiss roll, t in [1.5 pi, 4.5 pi], scaled to about [-3, 3]^2."""
    t = 1.5 * math.pi * (1 + 2 * _uniform(n, g))
    return _jitter(torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 5, noise, g)


def scurve(n: int, noise: float, g: torch.Generator) -> torch.Tensor:
    """scikit-learn's 3-d S-curve (make_s_curve) seen along its flat axis: (x, z), scaled by 1.5,
    as the 2-d "scurve" of the OT-CFM and DSBM benchmarks (TrajectoryNet's SklearnData);
    the noise is added before scaling, as there."""
    t = 3 * math.pi * (_uniform(n, g) - 0.5)
    points = torch.stack([torch.sin(t), torch.sign(t) * (torch.cos(t) - 1)], dim=1)
    return 1.5 * _jitter(points, noise, g)


# name -> (generator, default noise)
TOY2D: dict[str, tuple[Callable[[int, float, torch.Generator], torch.Tensor], float]] = {
    "moons": (moons, 0.05),
    "8gaussians": (eight_gaussians, 0.1),
    "checkerboard": (checkerboard, 0.0),
    "circles": (circles, 0.05),
    "swissroll": (swissroll, 0.05),
    "scurve": (scurve, 0.05),
}


def toy2d(name: str, n: int, noise: float | None, g: torch.Generator) -> torch.Tensor:
    make, default_noise = TOY2D[name]
    return make(n, default_noise if noise is None else noise, g)
