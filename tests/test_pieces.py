"""Unit tests of the small typed pieces: path, EMA, schedule, early stopping, data, model, W2."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from flowstudy.config import MoonsConfig
from flowstudy.data import build_data
from flowstudy.early_stopping import EarlyStopping
from flowstudy.ema import EMA
from flowstudy.flows.paths import CondOTPath
from flowstudy.flows.solvers import euler
from flowstudy.metrics import wasserstein2
from flowstudy.models.mlp import MLP
from flowstudy.schedule import WarmupCosine


@pytest.mark.parametrize("sigma_min", [0.0, 0.1])
def test_cond_ot_path_matches_its_formula(sigma_min: float) -> None:
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    path = CondOTPath(sigma_min)
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    xt, target = path.sample(x0, x1, t)
    expected = (1 - (1 - sigma_min) * t[:, None]) * x0 + t[:, None] * x1
    torch.testing.assert_close(xt, expected)
    torch.testing.assert_close(target, x1 - (1 - sigma_min) * x0)
    torch.testing.assert_close(xt[0], x0[0])  # t=0: the source
    torch.testing.assert_close(xt[-1], sigma_min * x0[-1] + x1[-1])  # t=1: data (+ sigma_min x0)


def test_euler_integrates_the_path_exactly_for_its_true_velocity() -> None:
    # The OT path with sigma_min=0 moves in straight lines at constant speed x1 - x0, so
    # Euler with the exact velocity lands on x1 in any number of steps.
    x0 = torch.randn(4, 2)
    x1 = torch.randn(4, 2)
    assert torch.allclose(euler(lambda x, t: x1 - x0, x0, steps=3), x1, atol=1e-6)


def test_ema_warmup_decay_and_foreach_update_match_reference() -> None:
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9999, power=2 / 3)
    shadow = [p.detach().clone() for p in model.parameters()]
    for k in range(1, 6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update()
        d = min(0.9999, 1 - (1 + k) ** (-2 / 3))
        assert ema.current_decay() == pytest.approx(d)
        shadow = [d * s + (1 - d) * p.detach() for s, p in zip(shadow, model.parameters(),
                                                                  strict=True)]
        for s, e in zip(shadow, ema.module.parameters(), strict=True):
            torch.testing.assert_close(e, s)
    assert EMA(model, 0.9999, None).current_decay() == 0.9999
    restored = EMA(torch.nn.Linear(3, 2), 0.9999, 2 / 3)
    restored.load_state_dict(ema.state_dict())
    assert restored.updates == 5
    for a, b in zip(restored.module.parameters(), ema.module.parameters(), strict=True):
        assert torch.equal(a, b)


def test_warmup_then_cosine() -> None:
    s = WarmupCosine(lr=1.0, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert s(110) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)
    lrs = [s(k) for k in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_early_stopping_counts_only_after_warmup_and_respects_min_delta() -> None:
    es = EarlyStopping(patience=2, min_delta=0.1)
    assert es.update(1.0, epoch=1)
    assert not es.update(0.95, epoch=2, counting=False)  # not better by min_delta; warmup
    assert es.bad_epochs == 0 and not es.should_stop
    assert not es.update(0.95, epoch=3) and not es.should_stop
    assert es.update(0.85, epoch=4) and es.bad_epochs == 0 and es.best_epoch == 4
    assert not es.update(math.nan, epoch=5)
    assert not es.update(0.9, epoch=6) and es.should_stop


def test_data_splits_are_fixed_by_the_data_seed_and_normalised_on_train() -> None:
    cfg = MoonsConfig(n_train=300, n_val=50, n_test=70)
    a, b = build_data(cfg), build_data(cfg)
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert a.train.shape == (300, 2) and a.val.shape == (50, 2) and a.test.shape == (70, 2)
    assert not torch.equal(build_data(MoonsConfig(n_train=300, n_val=50, n_test=70, seed=1)).train,
                           a.train)
    z = a.normalizer.encode(a.train)
    torch.testing.assert_close(z.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(a.normalizer.decode(z), a.train, atol=1e-5, rtol=0)


def test_mlp_maps_batches_to_velocities_of_the_same_shape() -> None:
    model = MLP(dim=5, width=16, depth=2)
    assert model(torch.randn(7, 5), torch.rand(7)).shape == (7, 5)


def test_w2_exact_on_known_cases() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 2, generator=g)
    assert wasserstein2(x, x[torch.randperm(50, generator=g)]) == pytest.approx(0.0, abs=1e-12)
    shift = torch.tensor([3.0, 4.0])
    assert wasserstein2(x, x + shift) == pytest.approx(5.0)  # translation: W2 = |shift|
    # Brute force over all permutations of a small set.
    a, b = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    cost = torch.cdist(a.double(), b.double()).square()
    best = min(sum(cost[i, p[i]].item() for i in range(6)) / 6
               for p in itertools.permutations(range(6)))
    assert wasserstein2(a, b) == pytest.approx(best ** 0.5)
    with pytest.raises(ValueError):
        wasserstein2(a, b[:5])
