"""The EMA of the weights: its warmup decay, its foreach update, its state."""

from __future__ import annotations

import pytest
import torch

from flowstudy.ema import EMA, full_decay_step, warmup_decay


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


@pytest.mark.parametrize("decay", [0.9999, 0.999])
@pytest.mark.parametrize("k", [0, 10, 1000, 100_000])
def test_the_effective_decay_at_step_k_is_the_documented_formula(decay: float, k: int) -> None:
    ema = EMA(torch.nn.Linear(3, 2), decay=decay, power=2 / 3)
    ema.load_state_dict({**ema.state_dict(), "updates": k})
    expected = min(decay, 1 - (1 + k) ** (-2 / 3))
    assert ema.current_decay() == pytest.approx(expected, abs=1e-12)
    assert warmup_decay(decay, 2 / 3, k) == pytest.approx(expected, abs=1e-12)


def test_0_999_and_0_9999_differ_only_from_step_31_622() -> None:
    # What --help and docs/training.md say: below 31,622 updates both follow the warmup alone.
    assert (full_decay_step(0.999, 2 / 3), full_decay_step(0.9999, 2 / 3)) == (31_622, 999_999)
    assert full_decay_step(0.99, 2 / 3) == 999 and full_decay_step(0.999, None) == 0
    for k in (0, 10, 1000, 31_621):
        assert warmup_decay(0.999, 2 / 3, k) == warmup_decay(0.9999, 2 / 3, k) < 0.999
    assert warmup_decay(0.999, 2 / 3, 31_622) == 0.999 < warmup_decay(0.9999, 2 / 3, 31_622)
    assert warmup_decay(0.999, 2 / 3, 100_000) == 0.999
    assert warmup_decay(0.9999, 2 / 3, 100_000) == pytest.approx(1 - 100_001 ** (-2 / 3))
    assert warmup_decay(0.999, None, 0) == 0.999  # no warmup: the setting from the first step
