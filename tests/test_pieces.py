"""Unit tests of the small training pieces: EMA, schedule, early stopping."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from flowstudy.early_stopping import EarlyStopping
from flowstudy.ema import EMA
from flowstudy.schedule import WarmupCosine


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
