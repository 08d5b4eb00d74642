"""Sample-quality metrics on cases with known answers."""

from __future__ import annotations

import functools
import itertools
import logging
import math
from pathlib import Path

import pytest
import scipy.stats
import torch
from torch import nn

import flowstudy.data
from flowstudy.config import SampleConfig, objective_direction
from flowstudy.data import DataSplits, Source
from flowstudy.data.files import load_vectors
from flowstudy.data.normalize import Normalizer
from flowstudy.errors import ConfigError
from flowstudy.evaluate import evaluate
from flowstudy.flows.likelihood import (
    EXACT_MAX_DIM,
    exact_divergence,
    hutchinson_divergence,
    nll_per_dim,
    rademacher,
)
from flowstudy.metrics import METRICS, PROJECTED, SET_METRICS, label
from flowstudy.metrics.c2st import c2st
from flowstudy.metrics.collapse import collapse_flags, collapse_warnings
from flowstudy.metrics.distances import (
    frechet_distance,
    frechet_from_stats,
    mmd2_unbiased,
    wasserstein2,
)
from flowstudy.metrics.gaussian import GaussianFit
from flowstudy.metrics.neighbours import (
    density_coverage,
    memorization,
    nearest_two,
    precision_recall,
)
from flowstudy.metrics.norms import norm_metrics, project_norm
from flowstudy.metrics.sets import sample_metrics
from flowstudy.report import rows_for, table
from flowstudy.results import RunResult, log_summary


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
    # N(0, I) vs N((2, 2), I): the best classifier's accuracy is Phi(sqrt(8) / 2) = 0.92.
    assert good["c2st"] < 0.6 and good["c2st_floor"] < 0.6 and bad["c2st"] > 0.88
    assert good["c2st"] == max(good["c2st_lr"], good["c2st_mlp"])
    assert bad["norm_w1"] > 5 * good["norm_w1"] and good["norm_w1_floor"] == bad["norm_w1_floor"]
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
    # Neither collapsed nor over-spread, and the fit of a Gaussian is a Gaussian: no flags.
    assert collapse_warnings(m) == [] and collapse_warnings(m, "_baseline") == []


def test_c2st_is_chance_for_one_distribution_and_certain_for_separated_sets() -> None:
    a = _normal(500, 8, 0)
    for seed in range(3):
        same = c2st(a, _normal(500, 8, 1 + seed), seed=seed)
        assert abs(same.lr - 0.5) < 0.05 and abs(same.mlp - 0.5) < 0.05, same
        assert same.accuracy == max(same.lr, same.mlp) and 0 < same.std < 0.1
    far = c2st(a, _normal(500, 8, 9) + 3.0, seed=0)
    assert far.lr > 0.99 and far.mlp > 0.99
    # Twice the spread, the same mean: no linear classifier sees it, the MLP does, and the
    # headline is the classifier that sees it.
    wide = c2st(a, 2 * _normal(500, 8, 10), seed=0)
    assert abs(wide.lr - 0.5) < 0.05 and wide.mlp > 0.8 and wide.accuracy == wide.mlp
    assert wide.as_metrics() == {"c2st": wide.mlp, "c2st_std": wide.std, "c2st_lr": wide.lr,
                                 "c2st_mlp": wide.mlp}


def test_c2st_is_deterministic_for_a_seed_and_nan_for_too_few_or_non_finite_points() -> None:
    a, b = _normal(300, 16, 0), _normal(300, 16, 1) + 0.1
    assert c2st(a, b, seed=3) == c2st(a.float(), b.float(), seed=3)
    assert c2st(a, b, seed=3) != c2st(a, b, seed=4)  # other folds, another initialisation
    for nan in (c2st(a[:9], b[:9]), c2st(a, b * math.nan), c2st(a, b * 1e300)):
        assert all(math.isnan(v) for v in nan.as_metrics().values())


def test_norm_metrics_on_scaled_rotated_and_identical_sets() -> None:
    x = _normal(400, 5, 0) + 1.0
    mean_norm = float(x.norm(dim=1).mean())
    shrunk = norm_metrics(0.9 * x, x)
    assert shrunk["norm_w1"] == pytest.approx(0.1 * mean_norm, rel=1e-9)
    assert shrunk["norm_mean"] == pytest.approx(0.9 * mean_norm, rel=1e-9)
    assert shrunk["norm_std"] == pytest.approx(0.9 * float(x.norm(dim=1).std()), rel=1e-9)
    perm = torch.randperm(400, generator=torch.Generator().manual_seed(1))
    assert norm_metrics(x, x[perm])["norm_w1"] == pytest.approx(0.0, abs=1e-12)
    q = torch.linalg.qr(_normal(5, 5, 2))[0]  # a rotation moves every point, no norm
    assert norm_metrics(x @ q, x)["norm_w1"] == pytest.approx(0.0, abs=1e-12)
    unit = torch.nn.functional.normalize(_normal(300, 64, 3), dim=1)
    other = torch.nn.functional.normalize(_normal(200, 64, 4), dim=1)  # sizes may differ
    m = norm_metrics(unit, other)
    assert m["norm_w1"] < 1e-12 and m["norm_mean"] == pytest.approx(1.0) and m["norm_std"] < 1e-12


BUILTIN = Path(flowstudy.data.__file__).parent / "builtin" / "minilm_stdlib.npy"


@functools.cache
def _embeddings(n: int = 1000) -> tuple[torch.Tensor, ...]:
    """The bundled 384-d sentence embeddings, shuffled by seed 0 and split as evaluate() does:
    (test, a fresh real set that is neither test nor train, the floor's train draw, a Gaussian
    fit's samples, train)."""
    x = load_vectors(str(BUILTIN))
    g = torch.Generator().manual_seed(0)
    x = x[torch.randperm(len(x), generator=g)]
    test, fresh, train = x[-n:], x[-2 * n:-n], x[:-2 * n]
    baseline = GaussianFit.fit(train).sample(n, g).float()
    return test, fresh, train[:n], baseline, train


@functools.cache
def _embedding_metrics(scale: float) -> dict[str, float]:
    """sample_metrics of a fresh real set of embeddings, times ``scale``, against the test set."""
    test, fresh, reference, baseline, train = _embeddings()
    return sample_metrics(scale * fresh, test, reference, baseline, train, seed=0)


def test_c2st_tells_a_gaussian_fit_from_real_embeddings_better_than_real_from_real() -> None:
    m = _embedding_metrics(1.0)
    # Measured: model (a fresh real set) 0.505, floor 0.517, Gaussian fit 0.557 (its MLP;
    # logistic regression 0.516): about two fold deviations (0.02-0.03) above the floor.
    assert abs(m["c2st"] - 0.5) < 0.04 and abs(m["c2st_floor"] - 0.5) < 0.04
    assert m["c2st_baseline"] > max(m["c2st"], m["c2st_floor"]) + 0.03
    # Real embeddings are unit vectors; the Gaussian's are not (1.00 +- 0.075).
    assert m["norm_w1_floor"] < 1e-3 and 0.04 < m["norm_w1_baseline"] < 0.08
    assert m["norm_mean_baseline"] == pytest.approx(1.0, abs=0.01)
    assert m["norm_std_baseline"] > 50 * m["norm_std_floor"]


@pytest.mark.slow  # three sample_metrics of 1,000 384-d points (C2ST thrice each): ~15 s
def test_collapse_warnings_fire_on_shrunk_and_spread_embeddings_and_not_on_real_ones() -> None:
    assert collapse_warnings(_embedding_metrics(1.0)) == []  # a fresh real draw
    # Shrunk by 0.9: FD at its floor, W2, precision and coverage better than theirs, yet
    # density 2.9 (floor 1.0), recall 0.61 (floor 0.88) and every norm 0.9.
    shrunk = _embedding_metrics(0.9)
    assert [f.kind for f in collapse_flags(shrunk)] == ["collapse", "collapse"]
    *flags, named = collapse_warnings(shrunk)
    assert flags[0].startswith("collapse: density 2.") and "norm W1 0.1 " in flags[1]
    assert named.endswith("flagged, not a win")
    assert all(f"{key} " in named for key in ("fd", "w2", "precision", "coverage"))
    # Spread by 1.2: density 0.17 with recall 1.0 (flattered), norms 1.2. Recall alone is at
    # its floor, so it alone is named.
    spread = _embedding_metrics(1.2)
    assert [f.kind for f in collapse_flags(spread)] == ["over-spread", "over-spread"]
    *_, named = collapse_warnings(spread)
    assert named.startswith("recall ") and named.endswith("flagged, not a win")
    # The Gaussian fit's norms are 1.00 +- 0.075, not on the sphere: the norm rule sees it.
    assert [f.kind for f in collapse_flags(shrunk, "_baseline")] == ["norms off"]


def _prdc(density: float, recall: float, **extra: float) -> dict[str, float]:
    return {"density": density, "density_floor": 1.0, "recall": recall, "recall_floor": 0.9,
            "fd": 0.1, "fd_floor": 0.1, "w2": 2.0, "w2_floor": 1.0, "precision": 0.5,
            "precision_floor": 0.9, "coverage": 0.97, "coverage_floor": 0.95, **extra}


def test_collapse_rule_thresholds_directions_and_missing_metrics() -> None:
    assert collapse_warnings(_prdc(1.29, 0.5)) == []  # density within 0.3 of its floor
    assert collapse_warnings(_prdc(2.0, 0.81)) == []  # recall within 0.1 of its floor
    assert collapse_warnings(_prdc(0.5, 0.5)) == []  # poor, not over-spread: nothing flattered
    collapsed = collapse_warnings(_prdc(2.0, 0.5))
    assert collapsed[0].startswith("collapse: density 2 is 1 above its floor 1")
    # fd at its floor, coverage above it: named; w2 twice its floor, precision far below: not.
    # density 2 above its floor 1: flattered by collapse, named too.
    assert collapsed[1] == ("fd 0.1 (floor 0.1), coverage 0.97 (floor 0.95), density 2 (floor 1) "
                            "at or better than the floor: flagged, not a win")
    # Over-spread flatters recall (0.95, floor 0.9) alone: FD and coverage at their floors are
    # not its doing.
    assert collapse_warnings(_prdc(0.5, 0.95))[1] == (
        "recall 0.95 (floor 0.9) at or better than the floor: flagged, not a win")
    assert [f.kind for f in collapse_flags(_prdc(0.5, 0.95))] == ["over-spread"]
    norms = {"norm_w1_floor": 0.01, "norm_mean_floor": 2.0, "norm_std": 0.1,
             "norm_std_floor": 0.1}
    def kinds(w1: float, mean: float) -> list[str]:
        return [f.kind for f in collapse_flags({**norms, "norm_w1": w1, "norm_mean": mean})]
    assert kinds(0.109, 1.9) == []  # 4.95% of the mean norm 2 above the floor: within 5%
    assert kinds(0.2, 1.8) == ["collapse"] and kinds(0.2, 2.2) == ["over-spread"]
    assert kinds(0.2, 2.02) == ["norms off"]  # the spread is off, not the mean
    # Old results (no norm metrics), NaN metrics (a diverged model): no rule fires.
    assert collapse_warnings({"fd": 0.1, "fd_floor": 0.1}) == []
    assert collapse_warnings(_prdc(math.nan, math.nan, norm_w1=math.nan)) == []
    # A yardstick's own flags, against the same floors.
    assert [f.kind for f in collapse_flags({**_prdc(1.0, 0.9), "density_baseline": 2.0,
                                            "recall_baseline": 0.5}, "_baseline")] == ["collapse"]


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
    # Every set metric's floor and baseline, and test_nll's baseline (it has no floor).
    registered = {f"{m.name}_{kind}" for m in METRICS.values() if m.sample_set or m.name in first
                  for kind in ("floor", "baseline") if getattr(m, kind)}
    assert sorted(yardsticks) == sorted(registered) and "test_nll_baseline" in registered
    assert all(first[k] == again[k] for k in yardsticks)  # the run seed moves only the model
    assert first["w2"] != again["w2"] and first["w2_floor"] != moved["w2_floor"]
    assert first["c2st_floor"] != moved["c2st_floor"]  # the C2ST's folds follow the data seed
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


def test_the_end_of_run_log_shows_the_new_metrics_and_warns_of_collapse(
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    metrics = {f"{key}{kind}": 0.5 for key in SET_METRICS for kind in ("", "_floor", "_baseline")}
    metrics |= _prdc(2.0, 0.5, density_baseline=0.2, recall_baseline=0.6)
    result = RunResult(name="run", group="g", status="completed", epochs=3, best_val_loss=1.0,
                       best_epoch=2, stop_reason="max_epochs", nfe=100, flops_6nd=1e9,
                       metrics=metrics)
    with caplog.at_level(logging.INFO, logger="flowstudy"):
        log_summary(result, tmp_path / "result.json")
    lines = [r.getMessage() for r in caplog.records]
    for key in ("c2st", "c2st_mlp", "norm_w1", "norm_mean"):  # model / floor / gauss
        assert any(line.split() == [key, "0.5", "/", "0.5", "/", "0.5"] for line in lines), key
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"samples: {w}" for w in collapse_warnings(metrics)]
    assert warnings[0].startswith("samples: collapse: density 2 ")
    assert warnings[-1].endswith("flagged, not a win")


def test_c2st_and_norm_w1_are_objectives_minimised_and_their_context_is_not_ranked() -> None:
    # Closer to 0.5 is better and below 0.5 is noise: an objective minimises the accuracy.
    assert objective_direction("c2st") == "minimize" == objective_direction("norm_w1")
    for context in ("c2st_std", "c2st_lr", "c2st_mlp", "norm_mean", "norm_std"):
        assert METRICS[context].direction is None and METRICS[context].sample_set, context
        with pytest.raises(ConfigError):
            objective_direction(context)



# Fewer points than a k-NN ball or a C2ST fold needs give NaN, never a crash.
@pytest.mark.parametrize("n", [4, 5, 6, 9, 10])
def test_sample_metrics_small_sets_mark_undefined_metrics_nan(n, caplog):
    from flowstudy.metrics import SET_METRICS
    from flowstudy.metrics.sets import sample_metrics, undefined_at

    g = torch.Generator().manual_seed(0)
    sets = [torch.randn(n, 2, generator=g) for _ in range(4)]
    with caplog.at_level("WARNING", logger="flowstudy"):
        metrics = sample_metrics(*sets, train=torch.randn(40, 2, generator=g))
    undefined = set(undefined_at(n))
    assert undefined == ({"density", "coverage"} if n < 6 else set()) | (
        {"c2st", "c2st_std", "c2st_lr", "c2st_mlp"} if n < 10 else set())
    for key in SET_METRICS:
        for value in (metrics[key], metrics[f"{key}_floor"], metrics[f"{key}_baseline"]):
            assert math.isnan(value) == (key in undefined), (key, value)
    if undefined:
        assert f"NaN, not defined at this n ({n} points per set;" in caplog.text


def test_knn_metrics_below_k_plus_one_points_are_nan():
    from flowstudy.metrics.neighbours import density_coverage, precision_recall

    three, many = torch.randn(3, 2), torch.randn(20, 2)
    assert all(math.isnan(v) for v in precision_recall(three, many))
    assert all(math.isnan(v) for v in precision_recall(many, three))
    assert all(math.isnan(v) for v in density_coverage(torch.randn(5, 2), many))
    assert not any(math.isnan(v) for v in density_coverage(torch.randn(6, 2), many))


def test_projection_puts_samples_on_the_sphere_of_the_data_norm_keeping_directions() -> None:
    unit = torch.nn.functional.normalize(_normal(300, 16, 5), dim=1)
    shrunk = 0.9 * unit + 0.05 * _normal(300, 16, 6)  # collapsed inward, and noisy
    projected = project_norm(shrunk, float(unit.norm(dim=1).mean()))
    torch.testing.assert_close(projected.norm(dim=1), torch.ones(300, dtype=projected.dtype))
    torch.testing.assert_close(torch.nn.functional.normalize(shrunk, dim=1), projected)
    assert norm_metrics(projected, unit)["norm_w1"] < 1e-6 < norm_metrics(shrunk, unit)["norm_w1"]
    assert torch.equal(project_norm(torch.zeros(2, 3), 1.0), torch.zeros(2, 3))
    assert label("fd" + PROJECTED) == "FD (projected)" and label("fd") == "FD"
