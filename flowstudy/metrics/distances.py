"""Distances between two sample sets: exact W2, Fréchet distance and unbiased MMD²."""

from __future__ import annotations

import numpy as np
import torch

from flowstudy.transport import optimal_assignment


def wasserstein2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Exact 2-Wasserstein distance between two empirical measures of equal size.

    With equal uniform weights the optimal coupling is a permutation, so the optimal assignment
    on squared Euclidean costs gives W2 exactly.
    """
    if x.shape != y.shape:
        raise ValueError(f"exact W2 needs equal-sized sets, got {tuple(x.shape)}, {tuple(y.shape)}")
    cost = torch.cdist(x.double().cpu(), y.double().cpu()).square().numpy()
    cols = optimal_assignment(cost)
    return float(cost[np.arange(len(cols)), cols].mean() ** 0.5)


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(m)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_from_stats(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor,
                       cov2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + tr(C1) + tr(C2) - 2 tr((C1^1/2 C2 C1^1/2)^1/2), in float64.

    The symmetric form needs only eigendecompositions of symmetric matrices; eigenvalues that
    round-off makes slightly negative are clamped to zero.
    """
    mu1, cov1, mu2, cov2 = (a.double() for a in (mu1, cov1, mu2, cov2))
    root1 = _sqrt_psd(cov1)
    cross = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * cross)


def frechet_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double().cpu(), y.double().cpu()
    return frechet_from_stats(x.mean(0), torch.cov(x.T, correction=1).reshape(x.shape[1], -1),
                              y.mean(0), torch.cov(y.T, correction=1).reshape(y.shape[1], -1))


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, bandwidth: float | None = None) -> float:
    """Unbiased MMD^2 with an RBF kernel; bandwidth = median pairwise distance of x and y pooled."""
    x, y = x.double().cpu(), y.double().cpu()
    pooled = torch.cat([x, y])
    d2 = torch.cdist(pooled, pooled).square()
    if bandwidth is None:
        off_diagonal = d2[~torch.eye(len(pooled), dtype=torch.bool)]
        bandwidth = off_diagonal.median().sqrt().item() or 1.0
    k = torch.exp(-d2 / (2 * bandwidth**2))
    n, m = len(x), len(y)
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    return float((kxx.sum() - kxx.trace()) / (n * (n - 1))
                 + (kyy.sum() - kyy.trace()) / (m * (m - 1)) - 2 * kxy.mean())
