"""Sample-quality metrics between generated samples and held-out data (in data space)."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment


def wasserstein2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Exact 2-Wasserstein distance between two empirical measures of equal size.

    With equal uniform weights the optimal coupling is a permutation, so the optimal assignment
    on squared Euclidean costs gives W2 exactly.
    """
    if x.shape != y.shape:
        raise ValueError(f"exact W2 needs equal-sized sets, got {tuple(x.shape)}, {tuple(y.shape)}")
    cost = torch.cdist(x.double().cpu(), y.double().cpu()).square().numpy()
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean() ** 0.5)
