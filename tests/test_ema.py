"""The EMA of the weights: its warmup decay, its foreach update, its state."""

from __future__ import annotations

import pytest
import torch

from flowstudy.ema import EMA


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
