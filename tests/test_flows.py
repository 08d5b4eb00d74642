"""Paths against their formulas, couplings against brute force, solvers against exact ODEs."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
import torch

from flowstudy.config import TIME_SAMPLINGS
from flowstudy.flows import build_flow, solvers
from flowstudy.flows.couplings import EntropicOTCoupling, ExactOTCoupling, sinkhorn_log_plan
from flowstudy.flows.paths import BrownianBridgePath, CondOTPath, GaussianCFMPath, VPPath
from flowstudy.flows.solvers import StepLimit, solve, solver_steps
from flowstudy.flows.times import SAMPLERS, TimeSampler

from .helpers import compose_config

T = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])


def _pairs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(5, 3, generator=g) for _ in range(3))  # x0, x1, eps


@pytest.mark.parametrize("sigma_min", [0.0, 0.1])
def test_cond_ot_path(sigma_min: float) -> None:
    x0, x1, _ = _pairs()
    xt, target = CondOTPath(sigma_min).sample(x0, x1, T, None)
    t = T[:, None]
    torch.testing.assert_close(xt, (1 - (1 - sigma_min) * t) * x0 + t * x1)
    torch.testing.assert_close(target, x1 - (1 - sigma_min) * x0)
    torch.testing.assert_close(xt[0], x0[0])  # t=0: the source
    torch.testing.assert_close(xt[-1], sigma_min * x0[-1] + x1[-1])  # t=1: data (+ sigma_min x0)


def test_cfm_path_adds_constant_noise() -> None:
    x0, x1, eps = _pairs()
    xt, target = GaussianCFMPath(0.1).sample(x0, x1, T, eps)
    t = T[:, None]
    torch.testing.assert_close(xt, t * x1 + (1 - t) * x0 + 0.1 * eps)
    torch.testing.assert_close(target, x1 - x0)
    torch.testing.assert_close(xt[0], x0[0] + 0.1 * eps[0])
    torch.testing.assert_close(xt[-1], x1[-1] + 0.1 * eps[-1])
    assert not GaussianCFMPath(0.0).noisy


def test_vp_path_target_is_the_time_derivative() -> None:
    x0, x1, _ = _pairs()
    path = VPPath()
    xt, target = path.sample(x0, x1, T, None)
    angle = math.pi / 2 * T[:, None]
    torch.testing.assert_close(xt, torch.cos(angle) * x0 + torch.sin(angle) * x1)
    torch.testing.assert_close(xt[0], x0[0])
    torch.testing.assert_close(xt[-1], x1[-1])
    h = 1e-3  # central difference of x_t in t, in float64
    up, _ = path.sample(x0.double(), x1.double(), T.double() + h, None)
    down, _ = path.sample(x0.double(), x1.double(), T.double() - h, None)
    torch.testing.assert_close(target.double(), (up - down) / (2 * h), atol=1e-5, rtol=1e-5)


def test_brownian_bridge_path_and_its_corrected_target() -> None:
    x0, x1, eps = _pairs()
    sigma = 0.5
    xt, target = BrownianBridgePath(sigma).sample(x0, x1, T, eps)
    t = T[:, None]
    mu = t * x1 + (1 - t) * x0
    torch.testing.assert_close(xt, mu + sigma * torch.sqrt(t * (1 - t)) * eps)
    torch.testing.assert_close(xt[0], x0[0])  # no noise at the ends
    torch.testing.assert_close(xt[-1], x1[-1])
    torch.testing.assert_close(target[[0, -1]], (x1 - x0)[[0, -1]])
    middle = slice(1, 4)  # (1 - 2t) / (2 t (1 - t)) (x_t - mu_t) + x1 - x0
    expected = (1 - 2 * t) / (2 * t * (1 - t)) * (xt - mu) + (x1 - x0)
    torch.testing.assert_close(target[middle], expected[middle])
    torch.testing.assert_close(target[2], (x1 - x0)[2])  # t=1/2: the correction vanishes


@pytest.mark.parametrize("n", [2, 4, 6, 7])
def test_minibatch_ot_pairing_is_the_optimal_permutation(n: int) -> None:
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        x0, x1 = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)
        paired0, paired1 = ExactOTCoupling()(x0, x1)
        assert torch.equal(paired0, x0)
        assert sorted(map(tuple, paired1.tolist())) == sorted(map(tuple, x1.tolist()))
        cost = torch.cdist(x0.double(), x1.double()).square()
        best = min(sum(cost[i, p[i]].item() for i in range(n))
                   for p in itertools.permutations(range(n)))
        assert (paired0 - paired1).double().square().sum().item() == pytest.approx(best)


def test_sinkhorn_plan_has_uniform_marginals_and_tends_to_exact_ot() -> None:
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(6, 2, generator=g).double(), torch.randn(6, 2, generator=g).double()
    cost = torch.cdist(x0, x1).square()
    plan = sinkhorn_log_plan(cost, reg=0.5, iters=500).exp()
    uniform = torch.full((6,), 1 / 6, dtype=torch.float64)
    torch.testing.assert_close(plan.sum(1), uniform, atol=1e-6, rtol=0)  # the stopping tolerance
    torch.testing.assert_close(plan.sum(0), uniform, atol=1e-12, rtol=0)
    sharp = sinkhorn_log_plan(cost, reg=0.01, iters=5000).exp() * 6
    _, exact = ExactOTCoupling()(x0, x1)
    assert torch.equal(x1[sharp.argmax(1)], exact)  # small reg: the plan is the permutation
    _, drawn = EntropicOTCoupling(reg=0.01, iters=5000)(x0, x1, torch.Generator())
    assert torch.equal(drawn, exact)


def test_solvers_integrate_a_linear_ode_to_their_order() -> None:
    # dx/dt = x: x(1) = e x(0). Errors shrink with the solvers' orders; dopri5 meets its tolerance.
    x0 = torch.ones(3, 1, dtype=torch.float64)

    def grow(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x

    errors = {}
    for solver in ("euler", "midpoint", "rk4"):
        x1, nfe = solve(grow, x0, solver, steps=10)
        errors[solver] = (x1 - math.e).abs().max().item()
        assert nfe == {"euler": 10, "midpoint": 20, "rk4": 40}[solver]
    assert errors["euler"] > 10 * errors["midpoint"] > 100 * errors["rk4"]
    x1, nfe = solve(grow, x0, "dopri5", steps=0, atol=1e-9, rtol=1e-9)
    assert (x1 - math.e).abs().max().item() < 1e-7 and nfe > 6


def test_dopri5_stops_at_max_steps_in_one_line_and_counts_its_steps(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 21 item 8: tight tolerances on a stiff-enough field would run on for minutes."""
    x0 = torch.ones(3, 1, dtype=torch.float64)

    def wiggle(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.sin(40 * t)[:, None] * x

    _, nfe = solve(wiggle, x0, "dopri5", steps=0, atol=1e-6, rtol=1e-6, max_steps=1000)
    steps = solver_steps("dopri5", 0, nfe)
    assert nfe == 2 + 6 * steps and steps > 5  # two to choose the first step, six per step
    assert solver_steps("rk4", 8, 32) == 8
    monkeypatch.setattr(solvers, "PROGRESS_EVERY_S", 0.0)
    with caplog.at_level("INFO", logger="flowstudy"), pytest.raises(StepLimit) as info:
        solve(wiggle, x0, "dopri5", steps=0, atol=1e-6, rtol=1e-6, max_steps=steps - 1)
    assert re.fullmatch(rf"sample\.max_steps={steps - 1} reached: dopri5 at atol=1e-06, "
                        r"rtol=1e-06 had carried the samples to t=0\.\d{3} of 1; loosen "
                        r"sample\.atol and sample\.rtol, or raise sample\.max_steps",
                        str(info.value))
    assert any(r.getMessage().startswith("dopri5: t=") for r in caplog.records)


def test_euler_lands_on_x1_for_the_straight_path() -> None:
    x0, x1 = torch.randn(4, 2), torch.randn(4, 2)
    out, _ = solve(lambda x, t: x1 - x0, x0, "euler", steps=3)
    torch.testing.assert_close(out, x1)


def _logit_normal_moment(loc: float, scale: float, power: int) -> float:
    """E[sigmoid(loc + scale Z) ** power], Z ~ N(0, 1), by Gauss-Hermite quadrature."""
    z, w = np.polynomial.hermite_e.hermegauss(120)
    t = 1 / (1 + np.exp(-(loc + scale * z)))
    return float((w * t**power).sum() / math.sqrt(2 * math.pi))


def _moments(sampler: TimeSampler) -> tuple[float, float]:
    """The analytic mean and variance of each time distribution."""
    if sampler.kind == "uniform":
        return 0.5, 1 / 12
    if sampler.kind == "beta":
        a, b = sampler.a, sampler.b
        return a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))
    m1 = _logit_normal_moment(sampler.loc, sampler.scale, 1)
    return m1, _logit_normal_moment(sampler.loc, sampler.scale, 2) - m1**2


@pytest.mark.parametrize("sampler", [
    TimeSampler(), TimeSampler("logit_normal"), TimeSampler("logit_normal", loc=0.5, scale=0.7),
    TimeSampler("beta"), TimeSampler("beta", a=0.5, b=0.5), TimeSampler("beta", a=3.0, b=5.0),
], ids=lambda s: f"{s.kind}-{s.loc}-{s.scale}-{s.a}-{s.b}")
def test_each_time_distribution_has_its_analytic_mean_and_variance(sampler: TimeSampler) -> None:
    n = 200_000
    t = sampler.sample(n, torch.Generator().manual_seed(0)).double()
    assert t.shape == (n,) and t.min() >= 0 and t.max() <= 1
    mean, var = _moments(sampler)
    # Five standard errors: of the mean sqrt(var / n), of the variance sqrt((mu4 - var^2) / n).
    mu4 = float(((t - t.mean()) ** 4).mean())
    assert float(t.mean()) == pytest.approx(mean, abs=5 * math.sqrt(var / n))
    assert float(t.var()) == pytest.approx(var, abs=5 * math.sqrt((mu4 - var**2) / n))


def test_uniform_times_are_the_draws_of_before_and_every_sampler_is_a_choice() -> None:
    # The default draws exactly what training drew before time sampling was a setting.
    assert torch.equal(TimeSampler().sample(64, torch.Generator().manual_seed(3)),
                       torch.rand(64, generator=torch.Generator().manual_seed(3)))
    assert set(TIME_SAMPLINGS) == set(SAMPLERS)
    flow = build_flow(compose_config(["flow=cfm", "flow.time_sampling=beta", "flow.beta_a=3",
                                      "flow.beta_b=0.5"]).flow)
    assert flow.times == TimeSampler("beta", 0.0, 1.0, 3.0, 0.5) and flow.coupling is None
