"""Per-dimension normalisation with statistics taken from the train split only."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# IQR of a standard normal: dividing the IQR by it makes the robust scale match the std on
# Gaussian data.
_NORMAL_IQR = 1.3489795


def _quantiles(x: torch.Tensor, qs: tuple[float, ...]) -> list[torch.Tensor]:
    """Per-column quantiles with linear interpolation (torch.quantile caps its input size)."""
    ordered = x.sort(dim=0).values
    out = []
    for q in qs:
        pos = q * (x.shape[0] - 1)
        lo, frac = int(pos), pos - int(pos)
        hi = min(lo + 1, x.shape[0] - 1)
        out.append(ordered[lo] + frac * (ordered[hi] - ordered[lo]))
    return out


def norm_cv(x: torch.Tensor) -> float:
    """The coefficient of variation (std / mean) of the rows' Euclidean norms: 0 for points on
    a sphere, ~1 / sqrt(2 D) for an isotropic D-dim Gaussian."""
    norms = torch.linalg.vector_norm(x.double(), dim=1)
    return float(norms.std() / norms.mean()) if len(norms) > 1 and norms.mean() > 0 else 0.0


@dataclass
class Normalizer:
    shift: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor, kind: str = "standard", eps: float = 1e-6) -> Normalizer:
        """``standard``: per-dimension mean and std; ``robust``: per-dimension median and
        IQR / 1.349 (outliers barely move it); ``global``: one mean and std for all dimensions
        (images, whose border pixels are nearly constant). Constant dimensions keep scale 1."""
        if kind == "robust":
            q25, shift, q75 = _quantiles(x, (0.25, 0.5, 0.75))
            scale = (q75 - q25) / _NORMAL_IQR
        elif kind == "global":
            shift, scale = x.mean().expand(x.shape[1]), x.std().expand(x.shape[1])
        else:
            shift, scale = x.mean(dim=0), x.std(dim=0)
        return cls(shift.clone(), torch.where(scale > eps, scale, torch.ones_like(scale)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift.to(x.device)) / self.scale.to(x.device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.scale.to(z.device) + self.shift.to(z.device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"shift": self.shift.clone(), "scale": self.scale.clone()}
