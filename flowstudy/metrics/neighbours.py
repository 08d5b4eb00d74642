"""k-nearest-neighbour metrics: precision/recall, density/coverage and memorisation."""

from __future__ import annotations

import math

import torch

# The k of each k-NN metric: a set needs more than k points for each point to have k others.
PRDC_K = {"precision": 3, "recall": 3, "density": 5, "coverage": 5}


def min_points(k: int) -> int:
    """The fewest points a set needs for k-NN balls of k other points: k + 1."""
    return k + 1


def _radii(points: torch.Tensor, k: int) -> torch.Tensor:
    """Each point's distance to its k-th nearest other point."""
    return torch.cdist(points, points).kthvalue(k + 1, dim=1).values


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """k-NN precision and recall (Kynkaanniemi et al. 2019).

    Precision: the fraction of fake points inside some real point's k-NN ball (fidelity);
    recall: the fraction of real points inside some fake point's ball. Recall flatters
    over-spread samples: a few far-flung fakes have huge balls that swallow every real point, so
    read it beside coverage. NaN (not defined) when either set has at most ``k`` points.
    """
    if min(len(real), len(fake)) < min_points(k):
        return math.nan, math.nan
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
    coverage: the balls are the real points', so over-spread samples are not rewarded. NaN
    (not defined) when the real set has at most ``k`` points.
    """
    if len(real) < min_points(k) or len(fake) == 0:
        return math.nan, math.nan
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
