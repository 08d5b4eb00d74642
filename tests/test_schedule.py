"""The learning-rate schedule: warmup then cosine, on the host and on the device."""

from __future__ import annotations

import itertools

import pytest
import torch

from flowstudy.schedule import WarmupCosine


def test_warmup_then_cosine() -> None:
    s = WarmupCosine(lr=1.0, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    assert s(0) == pytest.approx(0.1) and s(9) == pytest.approx(1.0)
    assert s(10) == pytest.approx(1.0)
    assert s(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert s(110) == pytest.approx(0.1) and s(500) == pytest.approx(0.1)
    lrs = [s(k) for k in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_device_schedule_matches_the_host_schedule() -> None:
    s = WarmupCosine(lr=2e-3, warmup_steps=10, total_steps=110, min_lr_ratio=0.05)
    steps = torch.arange(130)
    assert torch.allclose(s.at(steps), torch.tensor([s(int(k)) for k in steps],
                                                    dtype=torch.float64), rtol=1e-12)
