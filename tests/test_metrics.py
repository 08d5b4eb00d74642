"""Sample-quality metrics on cases with known answers."""

from __future__ import annotations

import itertools

import pytest
import torch

from flowstudy.metrics import (
    frechet_distance,
    frechet_from_stats,
    mmd2_unbiased,
    precision_recall,
    sample_metrics,
    wasserstein2,
)


def _normal(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_w2_exact_on_known_cases() -> None:
    x = _normal(50, 2, 0)
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    assert wasserstein2(x, x[perm]) == pytest.approx(0.0, abs=1e-12)
    assert wasserstein2(x, x + torch.tensor([3.0, 4.0])) == pytest.approx(5.0)  # translation
    a, b = _normal(6, 2, 2), _normal(6, 2, 3)  # brute force over all couplings
    cost = torch.cdist(a, b).square()
    best = min(sum(cost[i, p[i]].item() for i in range(6)) / 6
               for p in itertools.permutations(range(6)))
    assert wasserstein2(a, b) == pytest.approx(best ** 0.5)
    with pytest.raises(ValueError):
        wasserstein2(a, b[:5])


def test_frechet_closed_forms() -> None:
    d = 4
    eye = torch.eye(d, dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    # N(0, I) vs N(mu, I): ||mu||^2; N(0, I) vs N(0, 4 I): d + 4d - 2 * 2d = d.
    assert frechet_from_stats(torch.zeros(d), eye, shift, eye) == pytest.approx(5.25)
    assert frechet_from_stats(torch.zeros(d), eye, torch.zeros(d), 4 * eye) == pytest.approx(d)
    x = _normal(20_000, d, 0)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(x, _normal(20_000, d, 1) + shift) == pytest.approx(5.25, abs=0.05)


def test_mmd_is_near_zero_for_the_same_distribution_and_positive_for_a_shift() -> None:
    same = mmd2_unbiased(_normal(500, 3, 0), _normal(500, 3, 1))
    shifted = mmd2_unbiased(_normal(500, 3, 0), _normal(500, 3, 1) + 1.0)
    assert abs(same) < 0.01 < shifted


def test_precision_recall_see_fidelity_and_coverage() -> None:
    real = _normal(1000, 2, 0)
    p, r = precision_recall(real, _normal(1000, 2, 1), k=3)
    assert p > 0.85 and r > 0.85
    collapsed = real[:1].repeat(1000, 1) + 0.01 * _normal(1000, 2, 2)  # mode collapse
    p, r = precision_recall(real, collapsed, k=3)
    assert p > 0.95 and r < 0.05


def test_sample_metrics_report_each_metric_with_its_floor() -> None:
    test, reference = _normal(300, 2, 0), _normal(300, 2, 1)
    good = sample_metrics(_normal(300, 2, 2), test, reference)
    bad = sample_metrics(_normal(300, 2, 3) + 2.0, test, reference)
    assert bad["w2"] > 5 * good["w2"] and bad["fd"] > 5 * good["fd"]
    assert good["w2_floor"] == bad["w2_floor"] > 0
    nan = sample_metrics(torch.full((300, 2), float("nan")), test, reference)
    assert nan["w2"] != nan["w2"] and nan["w2_floor"] == good["w2_floor"]
