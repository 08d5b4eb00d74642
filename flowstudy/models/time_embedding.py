"""Sinusoidal embedding of the flow time t in [0, 1], shared by every architecture."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinusoidalTimeEmbedding(nn.Module):
    """Fixed sin/cos features of t at geometrically spaced frequencies, projected to ``dim``."""

    def __init__(self, dim: int, freqs: int = 64, max_period: float = 10_000.0) -> None:
        super().__init__()
        half = freqs // 2
        # t lives in [0, 1]; scaling by 1000 spreads it over the periods the frequencies cover,
        # as for diffusion timesteps.
        freq = 1000.0 * torch.exp(-math.log(max_period) * torch.arange(half) / half)
        self.register_buffer("freq", freq, persistent=False)
        self.proj = nn.Linear(2 * half, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None] * self.freq[None, :]
        return self.proj(torch.cat([torch.cos(angles), torch.sin(angles)], dim=1))
