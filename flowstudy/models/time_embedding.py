"""Sinusoidal embedding of the flow time t in [0, 1], shared by every architecture."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalTimeEmbedding(nn.Module):
    """Fixed sin/cos features of t at ``freqs`` geometrically spaced frequencies, then either one
    linear projection to ``dim`` or (``mlp=True``) a two-layer MLP."""

    def __init__(self, dim: int, freqs: int = 64, mlp: bool = False,
                 max_period: float = 10_000.0) -> None:
        super().__init__()
        half = freqs // 2
        # t lives in [0, 1]; scaling by 1000 spreads it over the periods the frequencies cover,
        # as for diffusion timesteps.
        freq = 1000.0 * torch.exp(-math.log(max_period) * torch.arange(half) / half)
        self.register_buffer("freq", freq, persistent=False)
        layers: list[nn.Module] = [nn.Linear(2 * half, dim)]
        if mlp:
            layers += [nn.SiLU(), nn.Linear(dim, dim)]
        self.proj = nn.Sequential(*layers)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None] * self.freq[None, :]
        return self.proj(torch.cat([torch.cos(angles), torch.sin(angles)], dim=1))
