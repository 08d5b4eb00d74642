"""How training draws the time t in [0, 1] of each pair (t=0: source, t=1: data).

``uniform`` weights every t alike (the plain flow-matching loss); ``logit_normal`` is
sigmoid(N(loc, scale)), the weighting SD3 found best for images (Esser et al. 2024), which puts
most draws mid-path; ``beta`` is Beta(a, b), a skewed schedule (a > b: towards the data end).

Every sampler draws a fixed number of values from the generator it is given, whatever they turn
out to be, so a run resumed mid-epoch replays the draws it skips, and a CUDA graph can capture
the draw (no host reads, no data-dependent shapes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Marsaglia-Tsang accepts at least 95% of its proposals at shape >= 1: all 16 rejected (where
# the first proposal is kept) has probability below 1e-20.
GAMMA_PROPOSALS = 16


def gamma(shape: float, n: int, g: torch.Generator) -> torch.Tensor:
    """``n`` draws of Gamma(shape, 1) from ``g`` (torch's own sampler takes no generator):
    Marsaglia and Tsang's squeeze on ``GAMMA_PROPOSALS`` proposals at once, the first accepted
    kept; shape < 1 is Gamma(shape + 1) * U ** (1 / shape)."""
    alpha = shape + 1 if shape < 1 else shape
    d = alpha - 1 / 3
    c = 1 / math.sqrt(9 * d)
    x = torch.randn(GAMMA_PROPOSALS, n, generator=g, device=g.device)
    u = torch.rand(GAMMA_PROPOSALS, n, generator=g, device=g.device)
    v = (1 + c * x).clamp_min(1e-12) ** 3
    accept = (1 + c * x > 0) & (u.log() < 0.5 * x * x + d - d * v + d * v.log())
    first = accept.float().argmax(dim=0, keepdim=True)  # the first True; 0 where none
    out = d * v.gather(0, first)[0]
    if shape < 1:
        out = out * torch.rand(n, generator=g, device=g.device) ** (1 / shape)
    return out


@dataclass(frozen=True)
class TimeSampler:
    kind: str = "uniform"  # one of SAMPLERS
    loc: float = 0.0  # logit_normal: mean of the normal before the sigmoid
    scale: float = 1.0  # logit_normal: its std
    a: float = 2.0  # beta
    b: float = 1.0  # beta

    def sample(self, n: int, g: torch.Generator) -> torch.Tensor:
        """``n`` times from ``g``, on its device."""
        return SAMPLERS[self.kind](self, n, g)


def _uniform(s: TimeSampler, n: int, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g, device=g.device)


def _logit_normal(s: TimeSampler, n: int, g: torch.Generator) -> torch.Tensor:
    return torch.sigmoid(s.loc + s.scale * torch.randn(n, generator=g, device=g.device))


def _beta(s: TimeSampler, n: int, g: torch.Generator) -> torch.Tensor:
    x, y = gamma(s.a, n, g), gamma(s.b, n, g)
    return x / (x + y).clamp_min(torch.finfo(x.dtype).tiny)  # both underflowing: t = 0, not NaN


SAMPLERS = {"uniform": _uniform, "logit_normal": _logit_normal, "beta": _beta}
