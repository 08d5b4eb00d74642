"""Sample-quality metrics between generated samples and held-out data, in data space.

Every metric is also reported for an independent real set of the same size (the *floor*: a model
cannot be expected to beat the distance between the data and itself) and for samples of a
Gaussian fitted to the train split (the *baseline*: a model that does not beat it has learnt no
more than a mean and a covariance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from flowstudy.metrics import SET_METRICS
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


def _radii(points: torch.Tensor, k: int) -> torch.Tensor:
    """Each point's distance to its k-th nearest other point."""
    return torch.cdist(points, points).kthvalue(k + 1, dim=1).values


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """k-NN precision and recall (Kynkaanniemi et al. 2019).

    Precision: the fraction of fake points inside some real point's k-NN ball (fidelity);
    recall: the fraction of real points inside some fake point's ball. Recall flatters
    over-spread samples: a few far-flung fakes have huge balls that swallow every real point, so
    read it beside coverage.
    """
    real, fake = real.double().cpu(), fake.double().cpu()
    cross = torch.cdist(fake, real)  # [fake, real]
    precision = (cross <= _radii(real, k)[None, :]).any(dim=1).double().mean()
    recall = (_radii(fake, k)[None, :] >= cross.T).any(dim=1).double().mean()
    return float(precision), float(recall)


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020), built on the real points' k-NN balls only.

    Density: how many real balls hold each fake point, / k, averaged (1 when the sets match in
    distribution, above 1 where fakes crowd the modes). Coverage: the fraction of real points
    whose ball holds some fake (1 when matched). Unlike recall, a fake outlier cannot raise
    coverage: the balls are the real points', so over-spread samples are not rewarded.
    """
    real, fake = real.double().cpu(), fake.double().cpu()
    inside = torch.cdist(fake, real) <= _radii(real, k)[None, :]  # [fake, real]
    density = inside.double().sum() / (k * len(fake))
    coverage = inside.any(dim=0).double().mean()
    return float(density), float(coverage)


def nearest_two(queries: torch.Tensor, train: torch.Tensor,
                max_bytes: int = 256 * 2**20) -> torch.Tensor:
    """Distances [Q, 2] from each query to its nearest and second-nearest train point.

    The train set is streamed in blocks so no [Q, block] distance matrix exceeds ``max_bytes``
    (10^6 x 1024 train sets never meet a full [Q, N] matrix); the block runs on the queries'
    device."""
    queries = queries.float()
    block = max(2, max_bytes // (4 * max(len(queries), 1)))
    best = torch.full((len(queries), 2), math.inf, device=queries.device)
    for start in range(0, len(train), block):
        chunk = train[start:start + block].to(queries.device, torch.float32)
        nearest = torch.cdist(queries, chunk).topk(min(2, len(chunk)), dim=1,
                                                   largest=False).values
        best = torch.cat([best, nearest], dim=1).topk(2, dim=1, largest=False).values
    return best.cpu()


def memorization(queries: torch.Tensor, train: torch.Tensor,
                 ratio: float = 1 / 3) -> tuple[float, float]:
    """(fraction memorised, median distance to the train set) of ``queries``.

    A query is memorised when its nearest train point is closer than ``ratio`` times its
    second-nearest (the distance-ratio test of Yoon et al. 2023): a near copy of one training
    point rather than a point among many. Fresh real points score ~0."""
    two = nearest_two(queries, train)
    return float((two[:, 0] < ratio * two[:, 1]).double().mean()), float(two[:, 0].median())


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




def sample_metrics(samples: torch.Tensor, test: torch.Tensor, reference: torch.Tensor,
                   baseline: torch.Tensor, train: torch.Tensor,
                   device: torch.device | str = "cpu") -> dict[str, float]:
    """Every metric in ``SET_METRICS`` of ``samples`` against ``test``, with two yardsticks:

    ``<key>_floor``: the same metric for ``reference``, real points from the train split
    (for memorisation: the test points themselves, fresh real points the model never saw);
    ``<key>_baseline``: the same metric for ``baseline``, samples of a Gaussian fitted to train.
    ``samples``, ``test``, ``reference`` and ``baseline`` must have the same size (exact W2).
    Non-finite samples give NaN metrics. The distances to the train set, the one cost that
    grows with the data, are computed on ``device``.
    """
    def scores(x: torch.Tensor, memorized_from: torch.Tensor) -> dict[str, float]:
        if not torch.isfinite(x).all():
            return dict.fromkeys(SET_METRICS, math.nan)
        precision, recall = precision_recall(test, x)
        density, coverage = density_coverage(test, x)
        memorized, nn_dist = memorization(memorized_from.to(device), train)
        return {"w2": wasserstein2(x, test), "mmd": mmd2_unbiased(x, test),
                "fd": frechet_distance(x, test), "precision": precision, "recall": recall,
                "density": density, "coverage": coverage, "memorized": memorized,
                "nn_dist": nn_dist}

    model, floor = scores(samples, samples), scores(reference, test)
    gauss = scores(baseline, baseline)
    return {**model, **{f"{key}_floor": value for key, value in floor.items()},
            **{f"{key}_baseline": value for key, value in gauss.items()}}
