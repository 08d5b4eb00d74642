"""The Gaussian fit to the train split: the baseline every model must beat."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class GaussianFit:
    """N(mean, cov) fitted to a data set in float64: the baseline every model must beat."""

    mean: torch.Tensor
    eigenvalues: torch.Tensor  # of cov, floored at a tiny jitter (rank-deficient data)
    eigenvectors: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor, jitter: float = 1e-9) -> GaussianFit:
        x = x.double().cpu()
        mean = x.mean(dim=0)
        cov = torch.cov(x.T, correction=1).reshape(x.shape[1], x.shape[1])
        values, vectors = torch.linalg.eigh(cov)
        floor = jitter * max(float(values.mean()), 1e-12)
        return cls(mean, values.clamp_min(floor), vectors)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, len(self.mean), generator=generator, dtype=torch.float64)
        return self.mean + (z * self.eigenvalues.sqrt()) @ self.eigenvectors.T

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        whitened = ((x.double().cpu() - self.mean) @ self.eigenvectors) / self.eigenvalues.sqrt()
        return -0.5 * (whitened.square().sum(dim=1) + self.eigenvalues.log().sum()
                       + len(self.mean) * math.log(2 * math.pi))
