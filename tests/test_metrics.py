"""Sample-quality metrics on cases with known answers."""

from __future__ import annotations

import itertools
import logging
import math

import pytest
import scipy.stats
import torch
from torch import nn

from flowstudy.config import SampleConfig
from flowstudy.data import DataSplits, Source
from flowstudy.data.normalize import Normalizer
from flowstudy.evaluate import evaluate
from flowstudy.flows.likelihood import (
    EXACT_MAX_DIM,
    exact_divergence,
    hutchinson_divergence,
    nll_per_dim,
    rademacher,
)
from flowstudy.metrics.sets import (
    SET_METRICS,
    GaussianFit,
    density_coverage,
    frechet_distance,
    frechet_from_stats,
    memorization,
    mmd2_unbiased,
    nearest_two,
    precision_recall,
    sample_metrics,
    wasserstein2,
)
from flowstudy.report import rows_for, table
from flowstudy.results import RunResult


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


def test_sample_metrics_report_each_metric_with_its_floor_and_baseline() -> None:
    test, reference, baseline, train = (_normal(300, 2, s) for s in range(4))
    good = sample_metrics(_normal(300, 2, 4), test, reference, baseline, train)
    bad = sample_metrics(_normal(300, 2, 5) + 2.0, test, reference, baseline, train)
    assert bad["w2"] > 5 * good["w2"] and bad["fd"] > 5 * good["fd"]
    assert good["w2_floor"] == bad["w2_floor"] > 0 and good["w2_baseline"] == bad["w2_baseline"]
    nan = sample_metrics(torch.full((300, 2), float("nan")), test, reference, baseline, train)
    assert all(nan[k] != nan[k] for k in SET_METRICS)  # NaN, not a crash
    assert nan["w2_floor"] == good["w2_floor"] and nan["fd_baseline"] == good["fd_baseline"]


def test_a_shifted_set_has_the_squared_shift_as_frechet_distance() -> None:
    x = _normal(500, 3, 0) @ torch.tensor([[1.0, 0.3, 0.0], [0.0, 2.0, 0.5], [0.0, 0.0, 0.7]],
                                          dtype=torch.float64)
    shift = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    assert frechet_distance(x, x + shift) == pytest.approx(5.25, abs=1e-9)


def test_density_and_coverage_match_for_one_distribution_and_see_collapse_and_spread() -> None:
    real = _normal(1000, 2, 0)
    density, coverage = density_coverage(real, _normal(1000, 2, 1))
    assert density == pytest.approx(1.0, abs=0.1) and coverage == pytest.approx(1.0, abs=0.05)
    collapsed = real[:1].repeat(1000, 1) + 0.01 * _normal(1000, 2, 2)
    density, coverage = density_coverage(real, collapsed)
    assert coverage < 0.05 and density > 1.0  # all fakes crowd one real point's neighbourhood
    # Five times too spread: recall (fake balls) is flattered, coverage (real balls) is not.
    spread = 5 * _normal(1000, 2, 3)
    _, recall = precision_recall(real, spread)
    _, coverage = density_coverage(real, spread)
    assert recall > 0.95 and coverage < 0.5


def test_nearest_two_streams_the_train_set_and_matches_brute_force() -> None:
    train, queries = _normal(1000, 5, 0), _normal(70, 5, 1)
    brute = torch.cdist(queries, train).topk(2, dim=1, largest=False).values
    streamed = nearest_two(queries, train, max_bytes=70 * 4 * 64)  # blocks of 64 train rows
    assert torch.allclose(streamed.double(), brute, atol=1e-4)


def test_copies_of_the_train_set_are_memorised_and_fresh_samples_are_not() -> None:
    train = _normal(2000, 8, 0)
    copied, copy_dist = memorization(train[:500] + 1e-3 * _normal(500, 8, 1), train)
    assert copied == 1.0 and copy_dist < 0.01
    fresh, fresh_dist = memorization(_normal(500, 8, 2), train)
    assert fresh < 0.02 and fresh_dist > 0.5


def test_gaussian_fit_samples_and_scores_its_own_distribution() -> None:
    mix = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.5, 0.0], [0.2, -0.3, 0.4]], dtype=torch.float64)
    data = _normal(5000, 3, 0) @ mix.T + torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    fit = GaussianFit.fit(data)
    mean, cov = data.mean(0), torch.cov(data.T)
    x = _normal(100, 3, 1) @ mix.T
    exact = torch.distributions.MultivariateNormal(mean, cov).log_prob(x)
    assert torch.allclose(fit.log_prob(x), exact, atol=1e-9)
    drawn = fit.sample(20_000, torch.Generator().manual_seed(2))
    assert torch.allclose(torch.cov(drawn.T), cov, atol=0.03)
    assert torch.allclose(drawn.mean(0), mean, atol=0.02)
    flat = torch.cat([_normal(100, 2, 3), torch.full((100, 1), 5.0, dtype=torch.float64)], dim=1)
    degenerate = GaussianFit.fit(flat)  # a constant column: rank-deficient covariance
    assert torch.isfinite(degenerate.sample(10, torch.Generator().manual_seed(0))).all()
    assert torch.isfinite(degenerate.log_prob(flat)).all()


def test_a_gaussian_against_itself_sits_at_the_floor_and_so_does_its_gaussian_fit() -> None:
    mix = torch.tensor([[1.0, 0.0], [0.6, 0.4]], dtype=torch.float64)
    train, test, reference, samples = (_normal(n, 2, s) @ mix.T
                                       for s, n in enumerate((5000, 400, 400, 400)))
    baseline = GaussianFit.fit(train).sample(400, torch.Generator().manual_seed(9))
    m = sample_metrics(samples, test, reference, baseline, train)
    for key, tolerance in (("w2", 0.08), ("fd", 0.03), ("mmd", 0.005)):
        assert m[key] == pytest.approx(m[f"{key}_floor"], abs=tolerance), key
        assert m[f"{key}_baseline"] == pytest.approx(m[f"{key}_floor"], abs=tolerance), key
    for key in ("density", "coverage", "recall", "precision"):
        assert m[key] == pytest.approx(1.0, abs=0.1) and m[f"{key}_baseline"] > 0.9, key
    # In 2-d a fresh point's nearest neighbour is 3x closer than its second by chance with
    # probability (1/3)^2 = 1/9: the floor, not zero, is what a generalising model scores.
    assert m["memorized_floor"] == pytest.approx(1 / 9, abs=0.04)
    assert m["memorized"] == pytest.approx(m["memorized_floor"], abs=0.04)
    assert m["memorized_baseline"] == pytest.approx(m["memorized_floor"], abs=0.04)
    assert m["nn_dist"] == pytest.approx(m["nn_dist_floor"], rel=0.2)


class AffineFlow(nn.Module):
    """The velocity whose flow carries N(0, I) at t=0 exactly to N(mu, A^2) at t=1, A symmetric
    positive definite: x_t = M_t x0 + t mu with M_t = (1 - t) I + t A, so
    v(x, t) = (A - I) M_t^-1 (x - t mu) + mu, whose divergence tr((A - I) M_t^-1) integrates to
    log det A."""

    def __init__(self, a: torch.Tensor, mu: torch.Tensor) -> None:
        super().__init__()
        values, vectors = torch.linalg.eigh(a)
        self.values = nn.Parameter(values, requires_grad=False)
        self.vectors = nn.Parameter(vectors, requires_grad=False)
        self.mu = nn.Parameter(mu, requires_grad=False)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t[:, None].to(x)
        gain = (self.values - 1) / (1 - t + t * self.values)  # eigenvalues of (A - I) M_t^-1
        return ((x - t * self.mu) @ self.vectors * gain) @ self.vectors.T + self.mu


def _affine(dim: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(dim)
    q = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))[0]
    a = q @ torch.diag(torch.linspace(0.4, 2.5, dim, dtype=torch.float64)) @ q.T
    return a.to(dtype), torch.randn(dim, generator=g, dtype=torch.float64).to(dtype)


def test_likelihood_of_a_known_gaussian_under_an_affine_flow_matches_the_closed_form() -> None:
    a, mu = _affine(3)
    flow = AffineFlow(a, mu)
    normalizer = Normalizer(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64),
                            torch.tensor([0.5, 3.0, 1.0], dtype=torch.float64))
    z = mu + _normal(2000, 3, 0) @ a  # N(mu, A^2) in the model's coordinates
    x = normalizer.decode(z)
    scale = torch.diag(normalizer.scale)
    truth = torch.distributions.MultivariateNormal(normalizer.decode(mu), scale @ a @ a @ scale)
    expected = -truth.log_prob(x) / 3

    exact = nll_per_dim(flow, x, normalizer, exact_divergence, steps=20)
    assert torch.allclose(exact, expected, atol=1e-6)
    probes = rademacher(1, 2000, 3, torch.Generator().manual_seed(0)).double()
    estimate = nll_per_dim(flow, x, normalizer, hutchinson_divergence(probes), steps=20)
    # One probe per point: noisy per point, unbiased on average.
    assert (estimate - expected).abs().max() > 0.01
    assert float(estimate.mean()) == pytest.approx(float(expected.mean()), abs=0.02)
    # The identity flow (v = 0) leaves N(0, I): only the normaliser's Jacobian remains.
    still = nll_per_dim(lambda y, t: 0 * y, x, normalizer, exact_divergence, 4)
    unit = torch.distributions.MultivariateNormal(normalizer.shift, scale @ scale)
    assert torch.allclose(still, -unit.log_prob(x) / 3, atol=1e-9)


def _gaussian_data(dim: int, source: str = "gaussian") -> tuple[DataSplits, AffineFlow]:
    """Data that is exactly N(mu, A^2) in normalised coordinates, and the flow that makes it."""
    a, mu = _affine(dim, torch.float32)
    normalizer = Normalizer(torch.linspace(-1, 1, dim), torch.linspace(0.5, 3, dim))
    # Seeds apart from the run seeds evaluate() uses, or its source draws would be the train
    # set's own noise and the flow would reproduce the train set exactly.
    g = torch.Generator().manual_seed(99)
    split = [normalizer.decode(mu + torch.randn(n, dim, generator=g) @ a) for n in (3000, 200, 300)]
    source = Source() if source == "gaussian" else Source(source, Normalizer.fit(split[0]))
    return DataSplits("gauss", *split, normalizer=normalizer, source=source), AffineFlow(a, mu)


def test_evaluate_scores_a_known_flow_against_data_seeded_floors_and_baselines(
        caplog: pytest.LogCaptureFixture) -> None:
    data, flow = _gaussian_data(2)
    cfg = SampleConfig(n=300, steps=20, solver="rk4")
    first = evaluate(flow, data, cfg, seed=0, data_seed=0).metrics
    again = evaluate(flow, data, cfg, seed=1, data_seed=0).metrics
    moved = evaluate(flow, data, cfg, seed=0, data_seed=1).metrics
    yardsticks = [k for k in first if k.endswith(("_floor", "_baseline"))]
    assert len(yardsticks) == 2 * len(SET_METRICS) + 1  # and test_nll_baseline
    assert all(first[k] == again[k] for k in yardsticks)  # the run seed moves only the model
    assert first["w2"] != again["w2"] and first["w2_floor"] != moved["w2_floor"]
    # The flow is the data's distribution exactly: at the floor, and its likelihood is the
    # Gaussian fit's (the fit is the true model here).
    assert first["w2"] == pytest.approx(first["w2_floor"], rel=0.5)
    assert first["memorized"] == pytest.approx(first["memorized_floor"], abs=0.05)
    assert first["test_nll"] == pytest.approx(first["test_nll_baseline"], abs=0.02)
    assert first["test_nll"] == first["test_nll"]  # finite, exact divergence at 2-d

    off = evaluate(flow, data, SampleConfig(n=300, steps=4, likelihood=False), 0, 0).metrics
    assert "test_nll" not in off and off["w2_floor"] == first["w2_floor"]
    data, flow = _gaussian_data(2, source="moons")
    with caplog.at_level(logging.WARNING, logger="flowstudy"):
        other = evaluate(flow, data, cfg, seed=0, data_seed=0).metrics
    assert math.isnan(other["test_nll"]) and math.isfinite(other["test_nll_baseline"])
    assert "no log-density" in caplog.text


def test_hutchinson_test_nll_at_higher_dims_is_close_to_the_closed_form() -> None:
    dim = 16
    data, flow = _gaussian_data(dim)
    a, mu = _affine(dim, torch.float32)
    scale = torch.diag(data.normalizer.scale)
    truth = torch.distributions.MultivariateNormal(data.normalizer.decode(mu),
                                                   scale @ a @ a @ scale)
    expected = float(-truth.log_prob(data.test).mean() / dim)
    assert dim > EXACT_MAX_DIM  # so divergence=auto takes Hutchinson's estimate
    hutchinson = evaluate(flow, data, SampleConfig(n=300, steps=4), 0, 0).metrics["test_nll"]
    exact = evaluate(flow, data, SampleConfig(n=300, steps=4, divergence="exact"), 0,
                     0).metrics["test_nll"]
    assert exact == pytest.approx(expected, abs=1e-4)
    assert hutchinson == pytest.approx(expected, abs=0.02) and hutchinson != exact


def test_a_diverged_model_gets_nan_metrics_and_finite_yardsticks() -> None:
    data, flow = _gaussian_data(2)
    flow.mu.data.fill_(math.inf)  # every velocity, so every sample, is non-finite
    m = evaluate(flow, data, SampleConfig(n=300, steps=4), 0, 0).metrics
    assert all(math.isnan(m[k]) for k in (*SET_METRICS, "test_nll"))
    assert all(math.isfinite(v) for k, v in m.items() if k.endswith(("_floor", "_baseline")))


def test_the_report_shows_each_metric_with_its_floor_and_gaussian_baseline() -> None:
    def result(seed: int, test_nll: float) -> RunResult:
        return RunResult(name=f"mlp-seed{seed}", group="g", status="completed",
                         config={"seed": seed}, metrics={
                             "w2": 0.2, "w2_floor": 0.1, "w2_baseline": 0.5,
                             "test_nll": test_nll, "test_nll_baseline": 1.25,
                             "memorized": 0.0, "memorized_floor": 0.0,
                             "memorized_baseline": 0.0})
    header, cells, best = table(rows_for([result(0, 0.5), result(1, 0.7)]), "test_nll")
    row = dict(zip(header, cells[0], strict=True))
    # The mean [95% interval over seeds]: the seeds agree on W2, so its interval has no width.
    assert row["w2 (floor, gauss)"] == "0.2000 [0.2000, 0.2000] (floor 0.1000, gauss 0.5000)"
    # Two seeds 0.2 apart: the t interval (12.7 standard errors each side), shown to the
    # decimals its width allows; no floor.
    low, high = scipy.stats.ttest_1samp([0.5, 0.7], 0.0).confidence_interval()
    assert row["test_nll (floor, gauss)"] == f"0.6 [{low:.1f}, {high:.1f}] (gauss 1.2)"
    # One configuration wins nothing: it has nothing to be compared with.
    assert row["density (floor, gauss)"] == "-" and best is None
